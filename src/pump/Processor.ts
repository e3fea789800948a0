/**
 * Push mode: takes events from the buffer and runs the user's handler on them.
 * - per event: `concurrency` workers, each with one event in flight, so a slow event never idles the other slots;
 *   with an ordering key, events of one key run strictly in fetch order (retries included) while keys run in parallel;
 * - per batch: batches of up to `concurrency` events, one after another; `sequential` retries a failed batch in place.
 * A handler that exceeds `handlerTimeoutMs` is interrupted, and that counts as a failed delivery.
 */
import { Clock, Duration, Effect, Exit, Queue, Schedule, Semaphore } from "effect"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { Buffer, Delivery } from "../services/EventBuffer.ts"
import type { PumpMetricsRecorder } from "../services/PumpMetrics.ts"
import { type BatchProcessor, type EventProcessor, isPerEvent, type ResolvedOptions } from "./PumpOptions.ts"
import { traced } from "./tracing.ts"

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

/** Runs a handler with the timeout, measuring it; never fails (the outcome is in the Exit). */
const timed = <R>(
  deps: ProcessorDeps<R>,
  handler: Effect.Effect<void, unknown, R>
): Effect.Effect<Exit.Exit<void, unknown>, never, R> =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(Effect.timeout(handler, Duration.millis(deps.options.handlerTimeoutMs)))
    const ended = yield* Clock.currentTimeMillis
    deps.metrics.handlerDuration((ended - started) / 1000, outcomeOf(exit))
    return exit
  })

const idsOf = (events: ReadonlyArray<FlowcoreEvent>) => events.map((event) => event.eventId)

const runEventWorkers = <R>(deps: ProcessorDeps<R>, processor: EventProcessor<R>): Effect.Effect<void, never, R> => {
  const { buffer, options } = deps
  const handleOne = (event: FlowcoreEvent, attempt: number, deliveryId: number) =>
    Effect.flatMap(
      timed(
        deps,
        processor.handleEvent(event, { attempt }).pipe(
          traced("DataPump.handleEvent", {
            "flowcore.event_type": event.eventType,
            "flowcore.time_bucket": event.timeBucket,
            "flowcore.delivery": attempt
          })
        )
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
        const delivery = yield* buffer.reserve(1)
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

const runBatches = <R>(deps: ProcessorDeps<R>, processor: BatchProcessor<R>): Effect.Effect<void, never, R> =>
  Effect.gen(function* () {
    const { buffer, options } = deps
    const attemptsAllowed = options.maxRedeliveryCount
    for (;;) {
      const delivery = yield* buffer.reserve(options.concurrency)
      if (delivery.events.length === 0) return
      const ids = idsOf(delivery.events)
      const handle = processor.handler(delivery.events).pipe(
        traced("DataPump.handleBatch", {
          "flowcore.event_count": delivery.events.length,
          "flowcore.time_bucket": delivery.events[0]?.timeBucket ?? "",
          "flowcore.delivery": Math.max(...delivery.attempts)
        })
      )
      if (processor.sequential !== true) {
        const exit = yield* timed(deps, handle)
        if (Exit.isSuccess(exit)) buffer.acknowledge(ids, delivery.deliveryId)
        else buffer.fail(ids, delivery.deliveryId, exit.cause)
        continue
      }
      // In place: nothing after this batch may be handled (or checkpointed) before it settles.
      const attempt = Effect.flatMap(timed(deps, handle), (exit) => exit)
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
export const runProcessor = <R>(deps: ProcessorDeps<R>): Effect.Effect<void, never, R> => {
  const processor = deps.options.processor
  if (processor === undefined) return Effect.void
  return isPerEvent(processor) ? runEventWorkers(deps, processor) : runBatches(deps, processor)
}
