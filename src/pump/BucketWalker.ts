/**
 * The fetch loop: walks time buckets in order, pages each by cursor into the buffer, and follows the live edge.
 *
 * Unlike the original pump it never skips a bucket (the bucket list is refreshed before leaving the cached list),
 * keeps reading an hour until `rolloverSettleMs` after it ended (late events), and with a future `stopAt` keeps
 * following live events until that instant has passed.
 */
import { Clock, Duration, Effect, Tracer } from "effect"
import * as TimeBucket from "../domain/TimeBucket.ts"
import { TimeUuid } from "../domain/TimeUuid.ts"
import type { DataSource, EventPage } from "../services/DataSource.ts"
import type { Buffer } from "../services/EventBuffer.ts"
import type { Notifier } from "../services/Notifier.ts"
import { type PumpMetricsRecorder, typeRuns } from "../services/PumpMetrics.ts"
import type { ResolvedOptions } from "./PumpOptions.ts"
import type { PumpStatus } from "./PumpStatus.ts"
import { supervisedForever } from "./supervise.ts"
import { traced } from "./tracing.ts"

export interface WalkStart {
  readonly bucket: TimeBucket.TimeBucket
  /** Read strictly after this id in the start bucket; undefined reads the whole bucket. */
  readonly afterEventId: string | undefined
  /** The bucket list as fetched at start. */
  readonly buckets: ReadonlyArray<TimeBucket.TimeBucket>
}

export interface WalkerDeps {
  readonly dataSource: DataSource["Service"]
  readonly notifier: Notifier["Service"]
  readonly buffer: Buffer
  readonly metrics: PumpMetricsRecorder
  readonly status: PumpStatus
  readonly options: ResolvedOptions<unknown>
}

/** The first bucket after `bucket` in a sorted list, and not past `limit`. */
const nextIn = (
  buckets: ReadonlyArray<TimeBucket.TimeBucket>,
  bucket: TimeBucket.TimeBucket,
  limit: TimeBucket.TimeBucket
): TimeBucket.TimeBucket | undefined => {
  let lo = 0
  let hi = buckets.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((buckets[mid] as string) <= bucket) lo = mid + 1
    else hi = mid
  }
  const next = buckets[lo]
  return next !== undefined && next <= limit ? next : undefined
}

/** Where a run starts: the closest bucket at or after the saved one, or the live edge without a state. */
export const startPosition = (
  buckets: ReadonlyArray<TimeBucket.TimeBucket>,
  state: { readonly timeBucket: TimeBucket.TimeBucket; readonly eventId?: string | undefined } | undefined,
  now: number
): Omit<WalkStart, "buckets"> => {
  if (state === undefined) {
    // The smallest id of this millisecond (zero clock and node bytes): an event minted in the same millisecond as
    // the start always sorts after it, so the live edge never skips it.
    const lowest = TimeUuid.fromDate(new Date(now), 0, new Uint8Array(6), new Uint8Array(2))
    return { bucket: TimeBucket.fromDate(now), afterEventId: lowest.toString() }
  }
  const closest = buckets.find((bucket) => bucket >= state.timeBucket)
  if (closest === undefined || closest === state.timeBucket) {
    return { bucket: state.timeBucket, afterEventId: state.eventId }
  }
  return { bucket: closest, afterEventId: undefined }
}

/** Runs until `stopAt` is reached (then returns), or forever. */
export const walk = (deps: WalkerDeps, start: WalkStart): Effect.Effect<void> =>
  Effect.gen(function* () {
    const { buffer, dataSource, metrics, notifier, options, status } = deps
    const clock = yield* Clock.Clock
    // Read once: under Effect's default tracer a page's span and its annotations would go nowhere.
    const tracing = (yield* Tracer.Tracer) !== Tracer.nativeTracer
    const stopAt = options.stopAt
    const stopBucket = stopAt === undefined ? undefined : TimeBucket.fromDate(stopAt)
    const toEventId = stopAt === undefined ? undefined : TimeUuid.max(new Date(stopAt)).toString()
    const settle = options.rolloverSettleMs

    let buckets = start.buckets
    let bucket = start.bucket
    let afterEventId = start.afterEventId
    let cursor: string | undefined
    /** The largest page this buffer can take (the resolved maxPageSize is never above bufferSize). */
    const wholePage = options.maxPageSize
    /**
     * The page after the last one was requested ahead (or is held by the source) for this many events (0: none):
     * wait for room for it.
     */
    let readAhead = 0

    // The current hour's bucket and the end of the bucket being read, kept between pages: both are needed for every
    // page (see followingBucket), and formatting or parsing a bucket costs more than the rest of the page's bookkeeping.
    let hourBucket: TimeBucket.TimeBucket | undefined
    let hourStart = Number.POSITIVE_INFINITY
    let hourEnd = Number.NEGATIVE_INFINITY
    let endOf: { readonly bucket: TimeBucket.TimeBucket; readonly end: number } | undefined
    const bucketEnd = (of: TimeBucket.TimeBucket): number => {
      if (endOf?.bucket !== of) endOf = { bucket: of, end: TimeBucket.endEpochMillis(of) }
      return endOf.end
    }

    /** The last bucket that may be read now: the current hour, or the stopAt bucket before it. */
    const limitAt = (now: number): TimeBucket.TimeBucket => {
      if (hourBucket === undefined || now < hourStart || now >= hourEnd) {
        hourBucket = TimeBucket.fromDate(now)
        hourStart = TimeBucket.toEpochMillis(hourBucket)
        hourEnd = TimeBucket.endEpochMillis(hourBucket)
      }
      return stopBucket !== undefined && stopBucket < hourBucket ? stopBucket : hourBucket
    }

    const setLive = (live: boolean) => {
      if (status.live !== live) {
        status.live = live
        metrics.live(live)
      }
      if (live) {
        status.lagSeconds = 0
        metrics.lag(0)
      }
    }

    const fetchPage = supervisedForever(
      status.fetching,
      "Fetching events",
      options.supervisionSchedule,
      Effect.suspend(() => {
        const pageSize = Math.max(1, Math.min(options.maxPageSize, buffer.freeSlots()))
        return dataSource.fetchPage({
          timeBucket: bucket,
          cursor,
          afterEventId: cursor === undefined ? afterEventId : undefined,
          toEventId,
          pageSize,
          includeSensitiveData: options.includeSensitiveData,
          readAhead: wholePage,
          readPageSize: options.readPageSize,
          followingBucket: followingBucket(clock.currentTimeMillisUnsafe())
        })
      }),
      { onRetry: () => status.fetchRetries++ }
    )

    /** The bucket read after this one, if this one's hour is over and the next is in the list (see the loop's end). */
    const followingBucket = (now: number): TimeBucket.TimeBucket | undefined => {
      if (bucketEnd(bucket) + settle > now) return undefined
      return nextIn(buckets, bucket, limitAt(now))
    }

    const refreshBuckets = supervisedForever(
      status.fetching,
      "Listing time buckets",
      options.supervisionSchedule,
      dataSource.timeBuckets({ refresh: true })
    )

    const waitLive = (untilMs: number) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const timeout = Math.max(1, Math.min(options.liveWaitTimeoutMs, untilMs - now))
        yield* notifier.wait(Duration.millis(timeout)).pipe(
          Effect.tap((reason) => Effect.annotateCurrentSpan("flowcore.wake_reason", reason)),
          traced("DataPump.liveWait", { "flowcore.timeout_ms": timeout, "flowcore.notifier": notifier.name })
        )
        status.notifier.lastProgressAt = yield* Clock.currentTimeMillis
      })

    // A page requested ahead is waited for whole: it is already on its way. Otherwise a buffer smaller than two
    // pages can ask for half a page while the other half is handled. Two half pages cost up to two round trips where
    // a whole page costs one, so that pays only while handling a page takes longer than fetching one (measured:
    // handling since the last page arrived, and that page's fetch); with fast handlers the loop waits for room for a
    // whole page instead.
    let lastFetchNanos = 0n
    let offeredAt = 0n
    let settledAtOffer = 0
    /** Handling time per event, as last measured; undefined until measured. */
    let handlingNanos: bigint | undefined
    const partPagePays = (now: bigint): boolean => {
      const handled = buffer.snapshot().settled - settledAtOffer
      // Nothing handled since the last page arrived (it found the buffer empty): the last measurement stands.
      if (handled > 0) handlingNanos = (now - offeredAt) / BigInt(handled)
      return handlingNanos === undefined || BigInt(wholePage) * handlingNanos >= lastFetchNanos
    }
    const awaitRoom = Effect.gen(function* () {
      if (readAhead > 0) return yield* buffer.awaitSpace(readAhead)
      yield* buffer.awaitSpace(options.refillFreeSlots)
      if (buffer.freeSlots() >= wholePage) return
      if (!partPagePays(clock.currentTimeNanosUnsafe())) yield* buffer.awaitSpace(wholePage)
    })

    if (stopBucket !== undefined && bucket > stopBucket) return

    for (;;) {
      yield* awaitRoom
      status.fetchBucket = bucket
      const fetchStartedAt = clock.currentTimeMillisUnsafe()
      const fetchStartedNanos = clock.currentTimeNanosUnsafe()
      const page: EventPage = yield* tracing
        ? fetchPage.pipe(
            Effect.tap((fetched) =>
              Effect.annotateCurrentSpan({
                "flowcore.event_count": fetched.events.length,
                "flowcore.has_next_cursor": fetched.nextCursor !== undefined,
                // The walker only knows the flow type from the events it reads (the source's own span always has it).
                ...(fetched.events[0] === undefined ? {} : { "flowcore.flow_type": fetched.events[0].flowType })
              })
            ),
            traced("DataPump.fetchPage", { "flowcore.time_bucket": bucket })
          )
        : fetchPage
      const fetchedAt = clock.currentTimeMillisUnsafe()
      metrics.fetchDuration((fetchedAt - fetchStartedAt) / 1000)
      const count = page.events.length
      if (count > 0) {
        offeredAt = clock.currentTimeNanosUnsafe()
        lastFetchNanos = offeredAt - fetchStartedNanos
        settledAtOffer = buffer.snapshot().settled
        yield* buffer.offer(page.events, page.sizeBytes)
        const last = page.events[count - 1]
        if (last !== undefined) {
          afterEventId = last.eventId
          status.lastFetchedEventId = last.eventId
          // Whole bytes, as the buffer counts them: a fractional count turns the metric fields into doubles, and V8
          // then keeps recompiling the functions that touch them (their maps were deprecated), seconds of CPU.
          const perEvent = page.sizeBytes === undefined ? 0 : Math.round(page.sizeBytes / count)
          const runs = typeRuns((eventType, run) => metrics.pulled(eventType, run, run * perEvent))
          for (const event of page.events) runs.add(event.eventType)
          runs.flush()
          status.pulled += count
          const lastAt = TimeUuid.epochMillisOf(last.eventId)
          if (lastAt !== undefined) {
            status.lagSeconds = Math.max(0, (fetchedAt - lastAt) / 1000)
            metrics.lag(status.lagSeconds)
          }
        }
        // Parts of a page and the events they feed can be handled without waiting for anything, and then nothing
        // reads the response of the page read ahead until the parts run out. Yielding here, once the events are in
        // the buffer (and counted), lets it in while they are handled; yielding before would idle the handlers.
        if (page.responsePending === true) yield* Effect.yieldNow
      }
      // A page requested ahead shows the bucket as it was when it was requested: later events are not in it.
      const readAt = Math.min(fetchStartedAt, page.requestedAt ?? fetchStartedAt)
      if (page.nextCursor !== undefined && page.nextCursor !== cursor) {
        cursor = page.nextCursor
        readAhead = page.readAhead ?? 0
        continue
      }
      cursor = undefined
      readAhead = 0
      // The bucket has nothing more right now.
      if (stopAt !== undefined && stopBucket !== undefined && bucket >= stopBucket) {
        if (readAt >= stopAt + settle) return
        setLive(true)
        yield* waitLive(stopAt + settle)
        continue
      }
      const end = bucketEnd(bucket)
      if (readAt < end + settle) {
        // The bucket's hour is still open (or only just ended): this is the live edge.
        setLive(true)
        yield* waitLive(end + settle)
        continue
      }
      setLive(false)
      const limit = limitAt(clock.currentTimeMillisUnsafe())
      let next = nextIn(buckets, bucket, limit)
      if (next === undefined) {
        // Never trust a stale list: buckets created since it was fetched would be skipped.
        buckets = yield* refreshBuckets
        next = nextIn(buckets, bucket, limit)
      }
      bucket = next ?? (limit > bucket ? limit : TimeBucket.next(bucket))
      afterEventId = undefined
    }
  })
