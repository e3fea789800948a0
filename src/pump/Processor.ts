/**
 * Push mode: takes events from the buffer and runs the user's handler on them.
 * - per event: `concurrency` workers, each with one event in flight, so a slow event never idles the other slots;
 *   with an ordering key, events of one key run strictly in fetch order (retries included) while keys run in parallel;
 * - per batch: batches of up to `concurrency` events, one after another; `sequential` retries a failed batch in place.
 * A handler that exceeds `handlerTimeoutMs` is interrupted, and that counts as a failed delivery.
 */
import { Cause, Clock, Duration, Effect, Exit, Fiber, Queue, Schedule, Semaphore, Tracer } from "effect"
import { ChurnMap } from "../domain/ChurnMap.ts"
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

/**
 * A handler call watched for its deadline: when it is due, the watchdog marks it timed out and interrupts `fiber` —
 * the call's own fiber, or the worker's for a call that runs inline.
 */
interface Watch {
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  deadline: number
  /** A call is running (a worker's watch stays registered between its calls). */
  busy: boolean
  timedOut: boolean
}

/** What is done with a handler call's Exit; it is given back the call's start, so it needs no closure per call. */
type Settle<R> = (exit: Exit.Exit<void, unknown>, startedAt: number) => Effect.Effect<void, never, R>

/**
 * Runs a handler (which starts at `startedAt`) within its deadline and passes its Exit (a `TimeoutError` past the
 * deadline) to `settle`.
 */
type Call<R> = (
  handler: Effect.Effect<void, unknown, R>,
  startedAt: number,
  settle: Settle<R>
) => Effect.Effect<void, never, R>

/**
 * Handler deadlines without a timer per call (`Effect.timeout` forks a racer and arms a timer for every call, which
 * costs more than a no-op handler): one watchdog fiber per processor wakes at the earliest deadline and interrupts
 * the calls past it. Every deadline is "start + timeout", so a call that starts while the watchdog sleeps can never
 * be due before the watchdog wakes.
 *
 * A worker's calls run in the worker's own fiber (a fiber per call would cost as much again as a no-op handler):
 * a call past its deadline interrupts the whole worker, the worker's respawner settles that call as timed out and
 * starts the worker's loop again in a new fiber. Where a call must be a fiber of its own — under a real tracer, whose
 * span must end with the timeout, and for sequential batches, whose in-place retries must outlive a timed-out
 * attempt — `exitWithin` runs it in one, started at once so that a handler that completes synchronously never
 * suspends.
 */
const makeDeadlines = (clock: Clock.Clock, timeoutMs: number) => {
  const watched = new Set<Watch>()
  const timeoutError = () =>
    new Cause.TimeoutError(`The handler did not finish within handlerTimeoutMs (${timeoutMs} ms)`)
  const timedOut = (): Exit.Exit<void, unknown> => Exit.fail(timeoutError())

  const watchdog: Effect.Effect<never> = Effect.forever(
    Effect.suspend(() => {
      const now = clock.currentTimeMillisUnsafe()
      let next = now + timeoutMs
      for (const watch of watched) {
        if (!watch.busy) continue
        if (watch.deadline <= now) {
          watch.busy = false
          watch.timedOut = true
          watch.fiber?.interruptUnsafe()
        } else if (watch.deadline < next) {
          next = watch.deadline
        }
      }
      return Effect.sleep(Duration.millis(next - now))
    })
  )

  /** Runs `handler` (which started at `startedAt`) in a fiber of its own to its Exit, interrupting it at its deadline. */
  const exitWithin = <R>(
    handler: Effect.Effect<void, unknown, R>,
    startedAt: number
  ): Effect.Effect<Exit.Exit<void, unknown>, never, R> =>
    Effect.flatMap(Effect.forkChild(handler, { startImmediately: true }), (fiber) => {
      const done = fiber.pollUnsafe()
      if (done !== undefined) return Effect.succeed(done)
      const watch: Watch = { fiber, deadline: startedAt + timeoutMs, busy: true, timedOut: false }
      watched.add(watch)
      return Effect.map(
        Effect.ensuring(
          Fiber.await(fiber),
          Effect.sync(() => watched.delete(watch))
        ),
        // Past its deadline it is a timeout, even if an uninterruptible handler went on to finish.
        (exit) => (watch.timedOut ? timedOut() : exit)
      )
    })

  /**
   * Runs `loop` as a worker whose calls run inline (see above) until it returns. A call past its deadline ends the
   * worker's fiber; that call is then settled with the timeout, after its handler has stopped (a handler still
   * running never sees its event handed out again), and `loop` starts over.
   */
  const worker = <R>(loop: (call: Call<R>) => Effect.Effect<void, never, R>): Effect.Effect<void, never, R> =>
    Effect.gen(function* () {
      for (;;) {
        const watch: Watch = { fiber: undefined, deadline: 0, busy: false, timedOut: false }
        /** What to do with the running call's Exit: the respawner does it when the call timed out. */
        let settling: Settle<R> = () => Effect.void
        let callStartedAt = 0
        const settled = (exit: Exit.Exit<void, unknown>) => {
          // Timed out: this fiber is being interrupted, and the respawner settles the call.
          if (watch.timedOut) return Effect.interrupt
          watch.busy = false
          return settling(exit, callStartedAt)
        }
        const outcomes = {
          // One parameter, as matchCauseEffect otherwise wraps the callback in a closure on every call.
          onSuccess: (_: unknown) => settled(Exit.void),
          onFailure: (cause: Cause.Cause<unknown>) => settled(Exit.failCause(cause))
        }
        // Made where it runs (in the worker's fiber), so the watch is armed from here.
        const call: Call<R> = (handler, startedAt, settle) => {
          watch.deadline = startedAt + timeoutMs
          callStartedAt = startedAt
          settling = settle
          watch.busy = true
          return Effect.matchCauseEffect(handler, outcomes)
        }
        watched.add(watch)
        // Started at once, as the loop would run in place if the calls had fibers of their own.
        const fiber = yield* Effect.forkChild(
          Effect.withFiber((self) => {
            watch.fiber = self
            return loop(call)
          }),
          { startImmediately: true }
        )
        const exit = yield* Effect.ensuring(
          Fiber.await(fiber),
          Effect.sync(() => watched.delete(watch))
        )
        // Only a running call can time out: `settling` is that call's.
        if (!watch.timedOut) return yield* exit
        yield* settling(timedOut(), callStartedAt)
      }
    })

  return { watchdog, exitWithin, worker }
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
const handlerSpan = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  name: string,
  events: ReadonlyArray<FlowcoreEvent>,
  attributes: Record<string, unknown>
): Effect.Effect<A, E, R> =>
  Effect.withSpan(
    self.pipe(Effect.onExit((exit) => Effect.annotateCurrentSpan("flowcore.outcome", outcomeOf(exit)))),
    name,
    { attributes, links: producerLinks(events), captureStackTrace: false }
  )

/** Records how long a handler call that started at `started` took, with its outcome. */
const recordDuration = <R>(
  deps: ProcessorDeps<R>,
  clock: Clock.Clock,
  started: number,
  exit: Exit.Exit<void, unknown>
): void => deps.metrics.handlerDuration((clock.currentTimeMillisUnsafe() - started) / 1000, outcomeOf(exit))

/** What a handler span is named and says, made only under a real tracer. */
interface SpanInfo {
  readonly name: string
  readonly events: ReadonlyArray<FlowcoreEvent>
  readonly attributes: Record<string, unknown>
}

/** What stands for a span where none is made (no real tracer): the calls below only read it under one. */
const noSpan = (): SpanInfo => ({ name: "", events: [], attributes: {} })

/**
 * Runs a handler to its Exit in a fiber of its own, with its deadline and, under a real tracer, its span; measured,
 * and never fails. The span covers the deadline so that a timed-out handler ends it with outcome "timeout", not as a
 * bare interruption.
 */
const exitOf = <R>(
  deps: ProcessorDeps<R>,
  instrumentation: Instrumentation,
  span: () => SpanInfo,
  handler: Effect.Effect<void, unknown, R>
): Effect.Effect<Exit.Exit<void, unknown>, never, R> =>
  Effect.suspend(() => {
    const { clock, deadlines } = instrumentation
    const started = clock.currentTimeMillisUnsafe()
    const within = deadlines.exitWithin(handler, started)
    let run = within
    if (instrumentation.tracing) {
      const { name, events, attributes } = span()
      // Flattened inside the span, so that the span sees the handler's failure (or the timeout) as its own.
      run = Effect.exit(handlerSpan(Effect.flatten(within), name, events, attributes))
    }
    return Effect.map(run, (exit) => {
      recordDuration(deps, clock, started, exit)
      return exit
    })
  })

/**
 * A worker's handler calls, measured, then settled by `settle`: inline in the worker through `call` (see
 * makeDeadlines), or in a fiber of their own under a real tracer. Made once per worker, so that a call makes no
 * closures of its own: `settle` reads the worker's call in hand. Each call reads the clock where it runs.
 */
const measuredCalls = <R>(
  deps: ProcessorDeps<R>,
  instrumentation: Instrumentation,
  call: Call<R>,
  settle: (exit: Exit.Exit<void, unknown>) => Effect.Effect<void, never, R>
): ((span: () => SpanInfo, handler: Effect.Effect<void, unknown, R>) => Effect.Effect<void, never, R>) => {
  const { clock } = instrumentation
  const measured: Settle<R> = (exit, startedAt) => {
    recordDuration(deps, clock, startedAt, exit)
    return settle(exit)
  }
  return instrumentation.tracing
    ? (span, handler) => Effect.flatMap(exitOf(deps, instrumentation, span, handler), settle)
    : (_, handler) => call(handler, clock.currentTimeMillisUnsafe(), measured)
}

const eventIdOf = (event: FlowcoreEvent) => event.eventId

const runEventWorkers = <R>(
  deps: ProcessorDeps<R>,
  processor: EventProcessor<R>,
  instrumentation: Instrumentation
): Effect.Effect<void, never, R> => {
  const { buffer, options } = deps
  const { deadlines } = instrumentation
  /**
   * One worker's event calls through `call`: the event in hand is kept here, not in closures made per call. Each is
   * settled, then `after` runs with whether it succeeded.
   */
  const eventCalls = (call: Call<R>, after: (succeeded: boolean) => Effect.Effect<void, never, R>) => {
    let event: FlowcoreEvent | undefined
    let attempt = 1
    let deliveryId = 0
    const handle = measuredCalls(deps, instrumentation, call, (exit) => {
      const ids = [(event as FlowcoreEvent).eventId]
      const succeeded = Exit.isSuccess(exit)
      if (succeeded) buffer.acknowledge(ids, deliveryId)
      else buffer.fail(ids, deliveryId, exit.cause)
      return after(succeeded)
    })
    const span = (): SpanInfo => {
      const { eventId, eventType, timeBucket } = event as FlowcoreEvent
      return {
        name: "DataPump.handleEvent",
        events: [event as FlowcoreEvent],
        attributes: {
          "flowcore.event_type": eventType,
          "flowcore.event_id": eventId,
          "flowcore.time_bucket": timeBucket,
          "flowcore.event_count": 1,
          "flowcore.delivery": attempt
        }
      }
    }
    return (next: FlowcoreEvent, nextAttempt: number, nextDeliveryId: number) => {
      event = next
      attempt = nextAttempt
      deliveryId = nextDeliveryId
      return handle(span, processor.handleEvent(next, { attempt: nextAttempt }))
    }
  }
  const done = () => Effect.void

  if (processor.orderingKey === undefined) {
    const worker: Effect.Effect<void, never, R> = deadlines.worker((call) =>
      Effect.gen(function* () {
        const handle = eventCalls(call, done)
        for (;;) {
          // Only wait (an effect) when nothing is open: under load the events are already there.
          let delivery = buffer.tryReserve(1)
          if (delivery.events.length === 0) delivery = yield* buffer.reserve(1)
          const event = delivery.events[0]
          if (event === undefined) return
          yield* handle(event, delivery.attempts[0] ?? 1, delivery.deliveryId)
        }
      })
    )
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
    const heads = new ChurnMap<string, string>()
    const waiting = new ChurnMap<string, Array<Item>>()

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

    const worker: Effect.Effect<void, never, R> = deadlines.worker((call) => {
      // The item in hand and its key, for `after`.
      let attempt = 1
      let key = ""
      const handle = eventCalls(call, (succeeded) => {
        const final = options.maxRedeliveryCount >= 0 && attempt > options.maxRedeliveryCount
        // Not settled: the key stays blocked until its redelivery comes back.
        return succeeded || final ? release(key) : Semaphore.release(permits, 1)
      })
      return Effect.forever(
        Effect.gen(function* () {
          const item = yield* Queue.take(ready)
          attempt = item.attempt
          key = keyOf(item.event)
          yield* handle(item.event, item.attempt, item.deliveryId)
        })
      )
    })

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

/** A batch handler's span, for the `deliveryCount`th delivery of `events`. */
const batchSpan = (events: ReadonlyArray<FlowcoreEvent>, deliveryCount: number) => (): SpanInfo => ({
  name: "DataPump.handleBatch",
  events,
  attributes: {
    "flowcore.event_types": [...new Set(events.map((event) => event.eventType))],
    "flowcore.event_count": events.length,
    "flowcore.time_bucket": events[0]?.timeBucket ?? "",
    "flowcore.delivery": deliveryCount
  }
})

const runBatches = <R>(
  deps: ProcessorDeps<R>,
  processor: BatchProcessor<R>,
  instrumentation: Instrumentation
): Effect.Effect<void, never, R> =>
  instrumentation.deadlines.worker((call) => {
    const { buffer, options } = deps
    const attemptsAllowed = options.maxRedeliveryCount
    // The batch in hand, for `handle`'s settle (made once, not per batch).
    let ids: ReadonlyArray<string> = []
    let deliveryId = 0
    let closed = false
    const handle = measuredCalls(deps, instrumentation, call, (exit) => {
      if (Exit.isSuccess(exit)) buffer.acknowledge(ids, deliveryId)
      else buffer.fail(ids, deliveryId, exit.cause)
      return Effect.void
    })
    /** In place: nothing after this batch may be handled (or checkpointed) before it settles. */
    const inPlace = (
      events: ReadonlyArray<FlowcoreEvent>,
      firstDelivery: number,
      handler: Effect.Effect<void, unknown, R>
    ): Effect.Effect<void, never, R> => {
      let retries = 0
      const attempt = Effect.suspend(() =>
        Effect.flatMap(
          exitOf(deps, instrumentation, batchSpan(events, firstDelivery + retries++), handler),
          (exit) => exit
        )
      )
      const retried =
        attemptsAllowed < 0
          ? Effect.retry(attempt, options.redeliverySchedule)
          : Effect.retry(attempt, options.redeliverySchedule.pipe(Schedule.upTo({ times: attemptsAllowed })))
      return Effect.flatMap(Effect.exit(retried), (exit) => {
        if (Exit.isSuccess(exit)) {
          buffer.acknowledge(ids, deliveryId)
          return Effect.void
        }
        return Effect.andThen(
          deps.onFinalFailure(events, exit.cause),
          Effect.sync(() => buffer.settleFailed(ids, deliveryId))
        )
      })
    }
    const handleDelivery = (delivery: Delivery): Effect.Effect<void, never, R> => {
      const { events } = delivery
      if (events.length === 0) {
        closed = true
        return Effect.void
      }
      ids = events.map(eventIdOf)
      deliveryId = delivery.deliveryId
      let firstDelivery = 0
      for (const attempt of delivery.attempts) if (attempt > firstDelivery) firstDelivery = attempt
      const handler = processor.handler(events)
      return processor.sequential === true
        ? inPlace(events, firstDelivery, handler)
        : handle(instrumentation.tracing ? batchSpan(events, firstDelivery) : noSpan, handler)
    }
    // A loop, not a generator: resuming one per batch costs about as much as calling a no-op handler.
    return Effect.whileLoop({
      while: () => !closed,
      body: () => {
        // Only wait (an effect) when nothing is open: under load the events are already there.
        const delivery = buffer.tryReserve(options.concurrency)
        return delivery.events.length > 0
          ? handleDelivery(delivery)
          : Effect.flatMap(buffer.reserve(options.concurrency), handleDelivery)
      },
      step: () => {}
    })
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
