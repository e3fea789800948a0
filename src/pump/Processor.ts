/**
 * Push mode: takes events from the buffer and runs the user's handler on them.
 * - per event: `concurrency` workers, each with one event in flight, so a slow event never idles the other slots;
 *   with an ordering key, events of one key run strictly in fetch order (retries included) while keys run in parallel;
 * - per batch: batches of up to `concurrency` events, one after another; `sequential` retries a failed batch in place.
 * A handler that exceeds `handlerTimeoutMs` is interrupted, and that counts as a failed delivery.
 */
import { Cause, Clock, Duration, Effect, Exit, Fiber, Queue, Schedule, Semaphore, Tracer } from "effect"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { Buffer, Delivery } from "../services/EventBuffer.ts"
import type { PumpMetricsRecorder } from "../services/PumpMetrics.ts"
import { type BatchProcessor, type EventProcessor, isPerEvent, type ResolvedOptions } from "./PumpOptions.ts"

export interface ProcessorDeps<R> {
  readonly buffer: Buffer
  readonly metrics: PumpMetricsRecorder
  readonly options: ResolvedOptions<R>
  /** Runs the failed handler and the final-failure listeners (used by sequential batches). */
  readonly onFinalFailure: (events: ReadonlyArray<FlowcoreEvent>, reason: unknown) => Effect.Effect<void>
}

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): "success" | "failure" | "timeout" =>
  Exit.isSuccess(exit)
    ? "success"
    : exit.cause.reasons.some(
          (reason) => reason._tag === "Fail" && (reason.error as { _tag?: string })?._tag === "TimeoutError"
        )
      ? "timeout"
      : "failure"

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const ZERO_TRACE_ID = "0".repeat(32)
const ZERO_SPAN_ID = "0".repeat(16)

/** The producer's span from a W3C `traceparent` (version 00); anything malformed is ignored, as the spec requires. */
export const parseTraceparent = (value: unknown): Tracer.ExternalSpan | undefined => {
  if (typeof value !== "string") return undefined
  const match = TRACEPARENT.exec(value)
  if (match === null) return undefined
  const [, traceId, spanId, flags] = match as unknown as [string, string, string, string]
  if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return undefined
  return Tracer.externalSpan({ traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 })
}

/** Links from a handler span to the spans that produced its events (`metadata.traceparent`), one per producer span. */
const producerLinks = (events: ReadonlyArray<FlowcoreEvent>): Array<Tracer.SpanLink> => {
  const links: Array<Tracer.SpanLink> = []
  for (const event of events) {
    const span = parseTraceparent(event.metadata.traceparent)
    if (span !== undefined && !links.some((link) => link.span.spanId === span.spanId)) {
      links.push({ span, attributes: {} })
    }
  }
  return links
}

/** A handler call that has not completed synchronously, watched for its deadline. */
interface WatchedCall {
  readonly deadline: number
  readonly fiber: Fiber.Fiber<void, unknown>
  timedOut: boolean
}

/**
 * Handler deadlines without a timer per call (`Effect.timeout` forks a racer and arms a timer for every call, which
 * costs more than a no-op handler): each call runs in its own fiber, started at once so that a handler that completes
 * synchronously never suspends, and one watchdog fiber per processor wakes at the earliest deadline and interrupts
 * the calls past it. Every deadline is "start + timeout", so a call that starts while the watchdog sleeps can never
 * be due before the watchdog wakes.
 */
const makeDeadlines = (clock: Clock.Clock, timeoutMs: number) => {
  const watched = new Set<WatchedCall>()
  const timeoutError = () =>
    new Cause.TimeoutError(`The handler did not finish within handlerTimeoutMs (${timeoutMs} ms)`)

  const watchdog: Effect.Effect<never> = Effect.forever(
    Effect.suspend(() => {
      const now = clock.currentTimeMillisUnsafe()
      let next = now + timeoutMs
      for (const call of watched) {
        if (call.deadline <= now) {
          watched.delete(call)
          call.timedOut = true
          call.fiber.interruptUnsafe()
        } else if (call.deadline < next) {
          next = call.deadline
        }
      }
      return Effect.sleep(Duration.millis(next - now))
    })
  )

  /**
   * Runs `handler` (which started at `startedAt`) to its Exit, interrupting it at its deadline; a timed-out call
   * fails with a `TimeoutError`, as with `Effect.timeout`.
   */
  const exitWithin = <R>(
    handler: Effect.Effect<void, unknown, R>,
    startedAt: number
  ): Effect.Effect<Exit.Exit<void, unknown>, never, R> =>
    Effect.flatMap(Effect.forkChild(handler, { startImmediately: true }), (fiber) => {
      const done = fiber.pollUnsafe()
      if (done !== undefined) return Effect.succeed(done)
      const call: WatchedCall = { deadline: startedAt + timeoutMs, fiber, timedOut: false }
      watched.add(call)
      return Effect.map(
        Effect.ensuring(
          Fiber.await(fiber),
          Effect.sync(() => watched.delete(call))
        ),
        // Past its deadline it is a timeout, even if an uninterruptible handler went on to finish.
        (exit) => (call.timedOut ? Exit.fail(timeoutError()) : exit)
      )
    })

  return { watchdog, exitWithin }
}

/** How handlers are wrapped: read once per processor, since both checks sit on the per-event path. */
interface Instrumentation {
  readonly clock: Clock.Clock
  /** False under Effect's default (native) tracer, whose spans go nowhere: then no handler span is made at all. */
  readonly tracing: boolean
  readonly deadlines: ReturnType<typeof makeDeadlines>
}

/**
 * A handler span (data-first `withSpan`, as in `traced`: the pipeable form captures a stack trace on every call),
 * linked to the producers' spans so a trace shows what an event caused even though it is consumed in another trace.
 */
const handlerSpan =
  (
    instrumentation: Instrumentation,
    name: string,
    events: ReadonlyArray<FlowcoreEvent>,
    attributes: () => Record<string, unknown>
  ) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    instrumentation.tracing
      ? Effect.withSpan(
          self.pipe(Effect.onExit((exit) => Effect.annotateCurrentSpan("flowcore.outcome", outcomeOf(exit)))),
          name,
          { attributes: attributes(), links: producerLinks(events), captureStackTrace: false }
        )
      : self

/**
 * Runs a handler with its deadline, measuring it; never fails (the outcome is in the Exit). A span covers the
 * deadline so that a timed-out handler ends its span with outcome "timeout", not as a bare interruption; without
 * tracing the Exit is taken straight from the handler's fiber, since this sits on the per-event path.
 */
const timed = <R>(
  deps: ProcessorDeps<R>,
  instrumentation: Instrumentation,
  span: <A, E, R2>(self: Effect.Effect<A, E, R2>) => Effect.Effect<A, E, R2>,
  handler: Effect.Effect<void, unknown, R>
): Effect.Effect<Exit.Exit<void, unknown>, never, R> =>
  Effect.suspend(() => {
    const { clock, deadlines } = instrumentation
    const started = clock.currentTimeMillisUnsafe()
    const within = deadlines.exitWithin(handler, started)
    // Flattened inside the span, so that the span sees the handler's failure (or the timeout) as its own.
    const run = instrumentation.tracing ? Effect.exit(span(Effect.flatten(within))) : within
    return Effect.map(run, (exit) => {
      deps.metrics.handlerDuration((clock.currentTimeMillisUnsafe() - started) / 1000, outcomeOf(exit))
      return exit
    })
  })

const idsOf = (events: ReadonlyArray<FlowcoreEvent>) => events.map((event) => event.eventId)

const runEventWorkers = <R>(
  deps: ProcessorDeps<R>,
  processor: EventProcessor<R>,
  instrumentation: Instrumentation
): Effect.Effect<void, never, R> => {
  const { buffer, options } = deps
  const handleOne = (event: FlowcoreEvent, attempt: number, deliveryId: number) =>
    Effect.flatMap(
      timed(
        deps,
        instrumentation,
        handlerSpan(instrumentation, "DataPump.handleEvent", [event], () => ({
          "flowcore.event_type": event.eventType,
          "flowcore.event_id": event.eventId,
          "flowcore.time_bucket": event.timeBucket,
          "flowcore.event_count": 1,
          "flowcore.delivery": attempt
        })),
        processor.handleEvent(event, { attempt })
      ),
      (exit) =>
        Effect.sync(() => {
          if (Exit.isSuccess(exit)) buffer.acknowledge([event.eventId], deliveryId)
          else buffer.fail([event.eventId], deliveryId, exit.cause)
          return Exit.isSuccess(exit)
        })
    )

  if (processor.orderingKey === undefined) {
    const worker: Effect.Effect<void, never, R> = Effect.gen(function* () {
      for (;;) {
        // Only wait (an effect) when nothing is open: under load the events are already there.
        let delivery = buffer.tryReserve(1)
        if (delivery.events.length === 0) delivery = yield* buffer.reserve(1)
        const event = delivery.events[0]
        if (event === undefined) return
        yield* handleOne(event, delivery.attempts[0] ?? 1, delivery.deliveryId)
      }
    })
    return Effect.forEach(Array.from({ length: options.concurrency }), () => worker, {
      concurrency: "unbounded",
      discard: true
    })
  }

  const keyOf = processor.orderingKey
  return Effect.gen(function* () {
    interface Item {
      readonly event: FlowcoreEvent
      readonly attempt: number
      readonly deliveryId: number
    }
    const ready = yield* Queue.unbounded<Item>()
    const permits = yield* Semaphore.make(options.concurrency)
    // The event each key is working on (until it settles), and the events of that key waiting behind it.
    const heads = new Map<string, string>()
    const waiting = new Map<string, Array<Item>>()

    const release = (key: string) => {
      const queue = waiting.get(key)
      const next = queue?.shift()
      if (next === undefined) {
        heads.delete(key)
        waiting.delete(key)
        return Semaphore.release(permits, 1)
      }
      // The finished event's permit passes to the next event of its key.
      heads.set(key, next.event.eventId)
      return Effect.asVoid(Queue.offer(ready, next))
    }

    const worker: Effect.Effect<never, never, R> = Effect.forever(
      Effect.gen(function* () {
        const item = yield* Queue.take(ready)
        const key = keyOf(item.event)
        const succeeded = yield* handleOne(item.event, item.attempt, item.deliveryId)
        const final = options.maxRedeliveryCount >= 0 && item.attempt > options.maxRedeliveryCount
        if (succeeded || final) yield* release(key)
        else yield* Semaphore.release(permits, 1) // the key stays blocked until its redelivery comes back
      })
    )

    const dispatcher = Effect.gen(function* () {
      for (;;) {
        const delivery: Delivery = yield* buffer.reserve(options.concurrency)
        if (delivery.events.length === 0) return
        for (let i = 0; i < delivery.events.length; i++) {
          const event = delivery.events[i] as FlowcoreEvent
          const item: Item = { event, attempt: delivery.attempts[i] ?? 1, deliveryId: delivery.deliveryId }
          const key = keyOf(event)
          const head = heads.get(key)
          if (head === undefined || head === event.eventId) {
            heads.set(key, event.eventId)
            yield* Semaphore.take(permits, 1)
            yield* Queue.offer(ready, item)
          } else {
            const queue = waiting.get(key)
            if (queue === undefined) waiting.set(key, [item])
            else queue.push(item)
          }
        }
      }
    })

    yield* Effect.forEach(Array.from({ length: options.concurrency }), () => worker, {
      concurrency: "unbounded",
      discard: true
    }).pipe(Effect.forkScoped)
    yield* dispatcher
    // Buffer closed: let the events already dispatched finish, then stop the workers with the scope.
    yield* Semaphore.take(permits, options.concurrency)
  }).pipe(Effect.scoped)
}

const runBatches = <R>(
  deps: ProcessorDeps<R>,
  processor: BatchProcessor<R>,
  instrumentation: Instrumentation
): Effect.Effect<void, never, R> =>
  Effect.gen(function* () {
    const { buffer, options } = deps
    const attemptsAllowed = options.maxRedeliveryCount
    for (;;) {
      let delivery = buffer.tryReserve(options.concurrency)
      if (delivery.events.length === 0) delivery = yield* buffer.reserve(options.concurrency)
      if (delivery.events.length === 0) return
      const ids = idsOf(delivery.events)
      const firstDelivery = Math.max(...delivery.attempts)
      const spanFor = (deliveryCount: number) =>
        handlerSpan(instrumentation, "DataPump.handleBatch", delivery.events, () => ({
          "flowcore.event_types": [...new Set(delivery.events.map((event) => event.eventType))],
          "flowcore.event_count": delivery.events.length,
          "flowcore.time_bucket": delivery.events[0]?.timeBucket ?? "",
          "flowcore.delivery": deliveryCount
        }))
      const handle = processor.handler(delivery.events)
      if (processor.sequential !== true) {
        const exit = yield* timed(deps, instrumentation, spanFor(firstDelivery), handle)
        if (Exit.isSuccess(exit)) buffer.acknowledge(ids, delivery.deliveryId)
        else buffer.fail(ids, delivery.deliveryId, exit.cause)
        continue
      }
      // In place: nothing after this batch may be handled (or checkpointed) before it settles.
      let retries = 0
      const attempt = Effect.suspend(() =>
        Effect.flatMap(timed(deps, instrumentation, spanFor(firstDelivery + retries++), handle), (exit) => exit)
      )
      const retried =
        attemptsAllowed < 0
          ? Effect.retry(attempt, options.redeliverySchedule)
          : Effect.retry(attempt, options.redeliverySchedule.pipe(Schedule.upTo({ times: attemptsAllowed })))
      const exit = yield* Effect.exit(retried)
      if (Exit.isSuccess(exit)) {
        buffer.acknowledge(ids, delivery.deliveryId)
      } else {
        yield* deps.onFinalFailure(delivery.events, exit.cause)
        buffer.settleFailed(ids, delivery.deliveryId)
      }
    }
  })

/** Runs push-mode processing until the buffer is closed and the work in hand is done. */
export const runProcessor = <R>(deps: ProcessorDeps<R>): Effect.Effect<void, never, R> =>
  Effect.gen(function* () {
    const processor = deps.options.processor
    if (processor === undefined) return
    const clock = yield* Clock.Clock
    const deadlines = makeDeadlines(clock, deps.options.handlerTimeoutMs)
    yield* Effect.forkScoped(deadlines.watchdog)
    const instrumentation: Instrumentation = {
      clock,
      tracing: (yield* Tracer.Tracer) !== Tracer.nativeTracer,
      deadlines
    }
    yield* isPerEvent(processor)
      ? runEventWorkers(deps, processor, instrumentation)
      : runBatches(deps, processor, instrumentation)
  }).pipe(Effect.scoped)
