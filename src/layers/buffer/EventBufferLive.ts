/**
 * The default EventBuffer. Every operation is O(1) amortized per event:
 * - `entries` is a deque in fetch order; the watermark advances by popping settled entries off its head;
 * - `open` / `retry` are FIFO deques of entries that may be handed out (stale ones are skipped lazily);
 * - `byId` finds an entry for an ack or a fail without scanning.
 * Waiting uses one-shot wake-up signals: a woken waiter re-checks the state itself, so an interrupted waiter can never
 * swallow events.
 */
import { Clock, Deferred, Duration, Effect, type Fiber, FiberSet, Layer, Schedule } from "effect"
import { ChurnMap } from "../../domain/ChurnMap.ts"
import type { FlowcoreEvent } from "../../domain/FlowcoreEvent.ts"
import type { PumpState } from "../../domain/PumpState.ts"
import type { TimeBucket } from "../../domain/TimeBucket.ts"
import {
  type Buffer,
  type BufferConfig,
  type BufferSnapshot,
  type Delivery,
  EventBuffer
} from "../../services/EventBuffer.ts"
import { PumpMetrics, type PumpMetricsRecorder, typeRuns } from "../../services/PumpMetrics.ts"

const OPEN = 0
const RESERVED = 1
const BACKOFF = 2
const FINALIZING = 3
const SETTLED = 4
type EntryState = typeof OPEN | typeof RESERVED | typeof BACKOFF | typeof FINALIZING | typeof SETTLED

type Step = (now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>

interface Entry {
  readonly event: FlowcoreEvent
  readonly bytes: number
  state: EntryState
  deliveries: number
  deliveryId: number
  step: Step | undefined
}

/** A FIFO with O(1) push and shift, compacted lazily. */
class Deque<A> {
  items: Array<A> = []
  head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(item: A): void {
    this.items.push(item)
  }
  peek(): A | undefined {
    return this.items[this.head]
  }
  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head] as A
    this.items[this.head] = undefined as A
    this.head++
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
  clear(): void {
    this.items = []
    this.head = 0
  }
}

/** Awaits `deferred`; if interrupted, takes `waiter` out of the list `waiters()` holds by then (lists get replaced). */
const awaitOrLeave = <W>(deferred: Deferred.Deferred<void>, waiters: () => Array<W>, waiter: W): Effect.Effect<void> =>
  Effect.onInterrupt(Deferred.await(deferred), () =>
    Effect.sync(() => {
      const list = waiters()
      const index = list.indexOf(waiter)
      if (index >= 0) list.splice(index, 1)
    })
  )

/** Wake-up signals for any number of waiters. */
class Signal {
  waiters: Array<Deferred.Deferred<void>> = []
  wait(): Effect.Effect<void> {
    const deferred = Deferred.makeUnsafe<void>()
    this.waiters.push(deferred)
    return Deferred.await(deferred)
  }
  wakeAll = (): void => {
    if (this.waiters.length === 0) return
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) Deferred.doneUnsafe(waiter, Effect.void)
  }
  /** Like `wait`, for a waiter that may give up (a race): an interrupted wait leaves nothing behind. */
  waitInterruptibly(): Effect.Effect<void> {
    const deferred = Deferred.makeUnsafe<void>()
    this.waiters.push(deferred)
    return awaitOrLeave(deferred, () => this.waiters, deferred)
  }
}

/**
 * Waiters for free space, each with the number of free slots it needs: an ack frees one slot at a time, and waking
 * the fetch loop on every ack (for it to find too little space and wait again) would cost a fiber resume per event.
 */
class SpaceWaiters {
  waiters: Array<{ readonly needed: number; readonly deferred: Deferred.Deferred<void> }> = []
  /** An interrupted wait leaves nothing behind: a fetcher that is gone must not count as one waiting for a save. */
  wait(needed: number): Effect.Effect<void> {
    const waiter = { needed, deferred: Deferred.makeUnsafe<void>() }
    this.waiters.push(waiter)
    return awaitOrLeave(waiter.deferred, () => this.waiters, waiter)
  }
  /** Whether a waiter needs more than `free` slots. */
  wantMoreThan(free: number): boolean {
    return this.waiters.some((waiter) => waiter.needed > free)
  }
  /** Wakes the waiters whose need is met (all of them when `free` is Infinity, i.e. on close). */
  wake(free: number): void {
    if (this.waiters.length === 0) return
    if (!this.waiters.some((waiter) => waiter.needed <= free)) return
    const waiters = this.waiters
    this.waiters = waiters.filter((waiter) => waiter.needed > free)
    for (const waiter of waiters) if (waiter.needed <= free) Deferred.doneUnsafe(waiter.deferred, Effect.void)
  }
}

const emptyDelivery: Delivery = { deliveryId: 0, events: [], attempts: [] }

/** Hands out delivery ids; one source per layer, so ids never repeat across the buffers of successive generations. */
const deliveryIdSource = (): (() => number) => {
  let last = 0
  return () => ++last
}

export const makeBuffer = (
  config: BufferConfig,
  metrics: PumpMetricsRecorder,
  nextDeliveryId: () => number = deliveryIdSource()
) =>
  Effect.gen(function* () {
    const run = yield* FiberSet.makeRuntime<never, unknown, unknown>()
    const toStep = Schedule.toStep(config.redeliverySchedule) as Effect.Effect<Step>

    const entries = new Deque<Entry>()
    const byId = new ChurnMap<string, Entry>()
    const open = new Deque<Entry>()
    const retry = new Deque<Entry>()
    const openSignal = new Signal()
    const spaceWaiters = new SpaceWaiters()
    const watermarkSignal = new Signal()
    /** The scheduler of the fiber that made the buffer: wake-ups deferred to the next scheduler turn go through it. */
    const dispatcher = yield* Effect.withFiber((fiber) => Effect.succeed(fiber.currentDispatcher))
    let watermarkWakeScheduled = false
    const wakeWatermarkWaiters = () => {
      watermarkWakeScheduled = false
      watermarkSignal.wakeAll()
    }
    /**
     * Wakes the watermark's waiters (the checkpointer) on the next scheduler turn, once for all the acknowledgements of
     * this one: a save then covers them all, and a handler's fiber is not held up by a save it never waits for.
     */
    const wakeWatermarkWaitersSoon = () => {
      if (watermarkWakeScheduled || watermarkSignal.waiters.length === 0) return
      watermarkWakeScheduled = true
      dispatcher.scheduleTask(wakeWatermarkWaiters, 0)
    }
    const saveWantedSignal = new Signal()
    const emptySignal = new Signal()
    /** Expiry timers of pull-mode deliveries, with how many of their events are still reserved. */
    const expiries = new Map<number, { unsettled: number; readonly timer: Fiber.Fiber<unknown, unknown> }>()

    let closed = false
    let openCount = 0
    let reservedCount = 0
    let bytes = 0
    let watermark: PumpState | undefined = config.initialWatermark
    /** The last event of the settled prefix when the watermark moved since it was last read (made when read). */
    let watermarkEvent: FlowcoreEvent | undefined
    const currentWatermark = (): PumpState | undefined => {
      if (watermarkEvent !== undefined) {
        watermark = { timeBucket: watermarkEvent.timeBucket as TimeBucket, eventId: watermarkEvent.eventId }
        watermarkEvent = undefined
      }
      return watermark
    }
    let watermarkVersion = 0
    let acknowledged = 0
    let failed = 0
    let redelivered = 0
    let ignoredAcks = 0
    let settledTotal = 0

    // Events that left the deque (settled prefix) but are not yet covered by a confirmed save still count as held:
    // a crash before that save redelivers them.
    const releaseOnSettle = config.releaseOn === "settle"
    let prunedTotal = 0
    let savedPruned = 0
    /** `prunedTotal` as of each watermark version not yet confirmed saved, oldest first (the newest is the current). */
    const prunedAtVersion = new Deque<number>()
    const versionAtHead = () => watermarkVersion - prunedAtVersion.length + 1
    const unsaved = () => prunedTotal - savedPruned
    const held = () => entries.length + unsaved()
    const freeSlots = () => Math.max(0, config.capacity - held())

    const confirmSaved = (version: number) => {
      let covered: number | undefined
      while (prunedAtVersion.length > 0 && versionAtHead() <= version) covered = prunedAtVersion.shift()
      if (covered === undefined || covered <= savedPruned) return
      savedPruned = covered
      spaceWaiters.wake(freeSlots())
    }

    const advanceWatermark = () => {
      let last: Entry | undefined
      let head = entries.peek()
      let pruned = 0
      while (head !== undefined && head.state === SETTLED) {
        entries.shift()
        byId.delete(head.event.eventId)
        last = head
        pruned++
        head = entries.peek()
      }
      if (last === undefined) return
      watermarkEvent = last.event
      watermarkVersion++
      prunedTotal += pruned
      if (releaseOnSettle) savedPruned = prunedTotal
      else prunedAtVersion.push(prunedTotal)
      // Everything is settled and the fetcher waits for room: the save that frees it is due now, not on the next
      // turn. The checkpointer runs, then the fetcher, and the next page is in before this worker looks for more.
      if (entries.length === 0 && spaceWaiters.waiters.length > 0 && !releaseOnSettle) watermarkSignal.wakeAll()
      else wakeWatermarkWaitersSoon()
      spaceWaiters.wake(freeSlots())
      if (saveWantedSignal.waiters.length > 0 && fetcherWaitsForSave()) saveWantedSignal.wakeAll()
      if (entries.length === 0) emptySignal.wakeAll()
    }

    const settle = (entry: Entry) => {
      entry.state = SETTLED
      settledTotal++
      bytes -= entry.bytes
      metrics.buffered(entry.event.eventType, -1, -entry.bytes)
    }

    const reopen = (entry: Entry) => {
      if (entry.state !== BACKOFF) return
      entry.state = OPEN
      openCount++
      redelivered++
      metrics.redelivered(entry.event.eventType, 1)
      retry.push(entry)
      openSignal.wakeAll()
    }

    const offer = (events: ReadonlyArray<FlowcoreEvent>, sizeBytes: number | undefined) =>
      Effect.sync(() => {
        if (events.length === 0) return
        const perEvent = sizeBytes === undefined ? 0 : Math.round(sizeBytes / events.length)
        const runs = typeRuns((eventType, run) => metrics.buffered(eventType, run, run * perEvent))
        for (const event of events) {
          if (byId.has(event.eventId)) continue
          const entry: Entry = { event, bytes: perEvent, state: OPEN, deliveries: 0, deliveryId: 0, step: undefined }
          entries.push(entry)
          byId.set(event.eventId, entry)
          open.push(entry)
          openCount++
          bytes += perEvent
          runs.add(event.eventType)
        }
        runs.flush()
        // A waiting worker resumes inline when woken, and would handle the page before the fetcher could ask for the
        // next one: waking the workers on the next scheduler turn lets that request go out first.
        dispatcher.scheduleTask(openSignal.wakeAll, 0)
      })

    const takeOpen = (): Entry | undefined => {
      for (;;) {
        const entry = retry.length > 0 ? retry.shift() : open.shift()
        if (entry === undefined) return undefined
        if (entry.state === OPEN) return entry
      }
    }

    const tryReserve = (max: number): Delivery => {
      if (closed || openCount === 0 || max <= 0) return emptyDelivery
      const deliveryId = nextDeliveryId()
      // Sized up front: every open entry is in `open` or `retry`, so exactly this many are taken. Arrays grown from
      // empty would reserve 16 slots each, most of the allocation of a one-event call.
      const count = Math.min(max, openCount)
      const events = new Array<FlowcoreEvent>(count)
      const attempts = new Array<number>(count)
      let taken = 0
      while (taken < count) {
        const entry = takeOpen()
        if (entry === undefined) break
        entry.state = RESERVED
        entry.deliveries++
        entry.deliveryId = deliveryId
        openCount--
        reservedCount++
        metrics.reserved(entry.event.eventType, 1)
        events[taken] = entry.event
        attempts[taken] = entry.deliveries
        taken++
      }
      if (taken === 0) return emptyDelivery
      if (taken < count) {
        events.length = taken
        attempts.length = taken
      }
      return { deliveryId, events, attempts }
    }

    const accept = (eventId: string, deliveryId: number | undefined, countIgnored = true): Entry | undefined => {
      const entry = byId.get(eventId)
      if (
        entry === undefined ||
        entry.state !== RESERVED ||
        (deliveryId !== undefined && entry.deliveryId !== deliveryId)
      ) {
        if (countIgnored) ignoredAcks++
        return undefined
      }
      reservedCount--
      metrics.reserved(entry.event.eventType, -1)
      // Pull-mode deliveries only: push mode never has expiries, and this runs once per event.
      const expiry = expiries.size === 0 ? undefined : expiries.get(entry.deliveryId)
      if (expiry !== undefined && --expiry.unsettled === 0) {
        // Nothing of that delivery is reserved any more: its timer would only wake up to do nothing.
        expiries.delete(entry.deliveryId)
        expiry.timer.interruptUnsafe()
      }
      return entry
    }

    const acknowledge = (eventIds: ReadonlyArray<string>, deliveryId?: number): number => {
      let accepted = 0
      for (const eventId of eventIds) {
        const entry = accept(eventId, deliveryId)
        if (entry === undefined) continue
        settle(entry)
        acknowledged++
        metrics.acknowledged(entry.event.eventType, 1)
        accepted++
      }
      if (accepted > 0) advanceWatermark()
      return accepted
    }

    const settleAsFailed = (batch: ReadonlyArray<Entry>) => {
      for (const entry of batch) {
        settle(entry)
        failed++
        metrics.failed(entry.event.eventType, 1)
      }
      advanceWatermark()
    }

    /** Failed handlers (with the final-failure listeners) running now. */
    let finalizing = 0
    const finalizedSignal = new Signal()
    const finalize = (batch: Array<Entry>, reason: unknown) => {
      finalizing++
      run(
        config
          .onFinalFailure(
            batch.map((entry) => entry.event),
            reason
          )
          .pipe(
            Effect.ensuring(
              Effect.sync(() => {
                settleAsFailed(batch)
                if (--finalizing === 0) finalizedSignal.wakeAll()
              })
            )
          )
      )
    }

    const settleFailed = (eventIds: ReadonlyArray<string>, deliveryId?: number): number => {
      const batch: Array<Entry> = []
      for (const eventId of eventIds) {
        const entry = accept(eventId, deliveryId)
        if (entry !== undefined) batch.push(entry)
      }
      if (batch.length > 0) settleAsFailed(batch)
      return batch.length
    }

    const scheduleRedelivery = (entry: Entry, reason: unknown) => {
      run(
        Effect.gen(function* () {
          if (entry.step === undefined) entry.step = yield* toStep
          const now = yield* Clock.currentTimeMillis
          const [, delay] = yield* entry.step(now, reason)
          yield* Effect.sleep(delay)
          reopen(entry)
        }).pipe(
          // An exhausted schedule means: no more redeliveries for this event.
          Effect.catch(() => Effect.sync(() => finalize([entry], reason)))
        )
      )
    }

    const failDelivery = (
      eventIds: ReadonlyArray<string>,
      deliveryId: number | undefined,
      reason: unknown,
      countIgnored: boolean
    ): number => {
      let accepted = 0
      const finalBatch: Array<Entry> = []
      for (const eventId of eventIds) {
        const entry = accept(eventId, deliveryId, countIgnored)
        if (entry === undefined) continue
        accepted++
        const exhausted = config.maxRedeliveryCount >= 0 && entry.deliveries > config.maxRedeliveryCount
        if (exhausted) {
          entry.state = FINALIZING
          finalBatch.push(entry)
        } else {
          entry.state = BACKOFF
          scheduleRedelivery(entry, reason)
        }
      }
      if (finalBatch.length > 0) finalize(finalBatch, reason)
      return accepted
    }

    const fail = (eventIds: ReadonlyArray<string>, deliveryId?: number, reason?: unknown): number =>
      failDelivery(eventIds, deliveryId, reason, true)

    const reserve = (max: number, options?: { readonly expiresInMs?: number | undefined }): Effect.Effect<Delivery> =>
      Effect.suspend(() => {
        const delivery = tryReserve(max)
        if (delivery.events.length > 0 || closed) {
          const expiresInMs = options?.expiresInMs
          if (expiresInMs !== undefined && delivery.events.length > 0) {
            const ids = delivery.events.map((event) => event.eventId)
            const timer = run(
              Effect.sleep(Duration.millis(expiresInMs)).pipe(
                Effect.andThen(
                  Effect.sync(() => {
                    expiries.delete(delivery.deliveryId)
                    failDelivery(ids, delivery.deliveryId, "reservation expired", false)
                  })
                )
              )
            )
            expiries.set(delivery.deliveryId, { unsettled: ids.length, timer })
          }
          return Effect.succeed(delivery)
        }
        return Effect.andThen(openSignal.wait(), reserve(max, options))
      })

    const awaitSpace = (free: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        const needed = Math.min(free, config.capacity)
        if (closed || freeSlots() >= needed) return Effect.void
        const wait = spaceWaiters.wait(needed)
        // The checkpointer may be waiting for more settles, or for its interval, before it saves; a save is what
        // this wait needs now.
        if (unsaved() > 0) {
          watermarkSignal.wakeAll()
          saveWantedSignal.wakeAll()
        }
        return Effect.andThen(wait, awaitSpace(free))
      })

    const fetcherWaitsForSave = () => unsaved() > 0 && spaceWaiters.wantMoreThan(freeSlots())

    const awaitSaveWanted: Effect.Effect<void> = Effect.suspend(() =>
      closed || fetcherWaitsForSave() ? Effect.void : saveWantedSignal.waitInterruptibly()
    )

    const awaitWatermark = (seen: number): Effect.Effect<number> =>
      Effect.suspend(() =>
        watermarkVersion !== seen || closed
          ? Effect.succeed(watermarkVersion)
          : Effect.map(watermarkSignal.wait(), () => watermarkVersion)
      )

    const awaitEmpty: Effect.Effect<void> = Effect.suspend(() =>
      entries.length === 0 ? Effect.void : Effect.andThen(emptySignal.wait(), awaitEmpty)
    )

    const awaitFailedHandlers: Effect.Effect<void> = Effect.suspend(() =>
      // Interruptible: shutdown gives up on it at the drain timeout.
      finalizing === 0 ? Effect.void : Effect.andThen(finalizedSignal.waitInterruptibly(), awaitFailedHandlers)
    )

    const snapshot = (): BufferSnapshot => ({
      held: held(),
      unsaved: unsaved(),
      open: openCount,
      reserved: reservedCount,
      bytes,
      capacity: config.capacity,
      acknowledged,
      failed,
      redelivered,
      ignoredAcks,
      watermark: currentWatermark(),
      watermarkVersion,
      settled: settledTotal
    })

    const close = Effect.sync(() => {
      closed = true
      openSignal.wakeAll()
      spaceWaiters.wake(Number.POSITIVE_INFINITY)
      watermarkSignal.wakeAll()
      saveWantedSignal.wakeAll()
      emptySignal.wakeAll()
    })

    // The gauges must not keep counting events of a buffer that is gone.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (let i = entries.head; i < entries.items.length; i++) {
          const entry = entries.items[i]
          if (entry === undefined || entry.state === SETTLED) continue
          metrics.buffered(entry.event.eventType, -1, -entry.bytes)
          if (entry.state === RESERVED) metrics.reserved(entry.event.eventType, -1)
        }
        entries.clear()
        byId.clear()
        open.clear()
        retry.clear()
      })
    )
    yield* Effect.addFinalizer(() => close)

    const buffer: Buffer = {
      offer,
      awaitSpace,
      freeSlots,
      reserve,
      tryReserve,
      acknowledge,
      fail,
      settleFailed,
      confirmSaved,
      fetcherWaitsForSave,
      awaitSaveWanted,
      awaitWatermark,
      awaitEmpty,
      awaitFailedHandlers,
      snapshot,
      close
    }
    return buffer
  })

/** The default EventBuffer layer. */
export const EventBufferLive: Layer.Layer<EventBuffer, never, PumpMetrics> = Layer.effect(
  EventBuffer,
  Effect.gen(function* () {
    const metrics = yield* PumpMetrics
    // An ack carrying the id of an older generation's delivery must never match a delivery of the current one.
    const nextDeliveryId = deliveryIdSource()
    return EventBuffer.of({ make: (config) => makeBuffer(config, metrics, nextDeliveryId) })
  })
)
