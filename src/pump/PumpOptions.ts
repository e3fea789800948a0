/**
 * The engine's options, their defaults, and their validation. Every invalid value fails with `InvalidOptions` naming
 * the option, the value received and what is allowed.
 */
import { Effect, type Schedule } from "effect"
import { cappedBackoff } from "../domain/backoff.ts"
import { InvalidOptions } from "../domain/errors.ts"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"

/** Handles one batch of up to `concurrency` events (the original README's handler shape). */
export interface BatchProcessor<R> {
  readonly concurrency?: number | undefined
  readonly handler: (events: ReadonlyArray<FlowcoreEvent>) => Effect.Effect<void, unknown, R>
  readonly failedHandler?: ((events: ReadonlyArray<FlowcoreEvent>) => Effect.Effect<void, unknown, R>) | undefined
  /**
   * Batches run strictly one after another and a failed batch is retried in place, so nothing after it is handled
   * before it settles. Pair with a transactional handler that writes the checkpoint in the same transaction.
   */
  readonly sequential?: boolean | undefined
}

export interface EventContext {
  /** 1 for the first delivery, 2 for the first redelivery, ... */
  readonly attempt: number
}

/** Handles events one at a time, `concurrency` of them continuously in flight. */
export interface EventProcessor<R> {
  readonly concurrency?: number | undefined
  readonly handleEvent: (event: FlowcoreEvent, context: EventContext) => Effect.Effect<void, unknown, R>
  readonly failedHandler?: ((events: ReadonlyArray<FlowcoreEvent>) => Effect.Effect<void, unknown, R>) | undefined
  /** Events with the same key are handled strictly in fetch order, retries included; other keys run in parallel. */
  readonly orderingKey?: ((event: FlowcoreEvent) => string) | undefined
}

export type Processor<R> = BatchProcessor<R> | EventProcessor<R>

export interface PumpOptions<R = never> {
  /** Events held in memory at most. Default 1000. */
  readonly bufferSize?: number | undefined
  /** Redeliveries before an event is finally failed; -1 retries forever. Default 3. */
  readonly maxRedeliveryCount?: number | undefined
  /** Pull mode: a reservation not acknowledged within this is redelivered. Default 5000. */
  readonly achknowledgeTimeoutMs?: number | undefined
  /** Push mode: a handler running longer is interrupted and counts as a failed delivery. Default 30000. */
  readonly handlerTimeoutMs?: number | undefined
  readonly includeSensitiveData?: boolean | undefined
  /** Stop after the last event at or before this instant has settled. A future instant keeps following live. */
  readonly stopAt?: Date | undefined
  /** Push mode when given; pull mode (`reserve` / `acknowledge` / `fail`) otherwise. */
  readonly processor?: Processor<R> | undefined
  /** Backoff between redeliveries of an event. Default: exponential from 250 ms, jittered, capped at 30 s. */
  readonly redelivery?:
    | { readonly baseDelayMs?: number | undefined; readonly maxDelayMs?: number | undefined }
    | undefined
  /** Longest live wait before re-polling, whatever the notifier does. Default 20000. */
  readonly liveWaitTimeoutMs?: number | undefined
  /** How long after an hour ends its bucket is still re-read for late events. Default 5000. */
  readonly rolloverSettleMs?: number | undefined
  /** `stop()` waits this long for handlers in flight before interrupting them. Default 10000. */
  readonly drainTimeoutMs?: number | undefined
  /** Largest page requested. Default 1000. */
  readonly maxPageSize?: number | undefined
  /** Save the checkpoint after this many settled events and/or this many ms. Default: every change. */
  readonly checkpoint?:
    | { readonly everyEvents?: number | undefined; readonly intervalMs?: number | undefined }
    | undefined
  /** Backoff for failing fetches and checkpoint saves. Default: from 500 ms, jittered, capped at 30 s. */
  readonly supervision?:
    | { readonly baseDelayMs?: number | undefined; readonly maxDelayMs?: number | undefined }
    | undefined
}

export interface ResolvedOptions<R> {
  readonly bufferSize: number
  readonly maxRedeliveryCount: number
  readonly achknowledgeTimeoutMs: number
  readonly handlerTimeoutMs: number
  readonly includeSensitiveData: boolean
  readonly stopAt: number | undefined
  readonly processor: Processor<R> | undefined
  readonly concurrency: number
  readonly redeliverySchedule: Schedule.Schedule<unknown, unknown>
  readonly liveWaitTimeoutMs: number
  readonly rolloverSettleMs: number
  readonly drainTimeoutMs: number
  /** The most events one fetch may hand to the buffer: the configured maxPageSize, at most bufferSize. */
  readonly maxPageSize: number
  /** The configured maxPageSize: the page read from the server, handed out in parts when above bufferSize. */
  readonly readPageSize: number
  /** Fetch only once this many slots are free, so pages are never tiny. */
  readonly refillFreeSlots: number
  readonly checkpointEveryEvents: number
  readonly checkpointIntervalMs: number
  readonly supervisionSchedule: Schedule.Schedule<unknown, unknown>
}

const integer = (field: string, value: unknown, fallback: number, min: number, allowed: string) =>
  value === undefined
    ? Effect.succeed(fallback)
    : typeof value === "number" && Number.isInteger(value) && value >= min
      ? Effect.succeed(value)
      : Effect.fail(InvalidOptions.of(field, value, allowed))

export const isPerEvent = <R>(processor: Processor<R>): processor is EventProcessor<R> =>
  typeof (processor as EventProcessor<R>).handleEvent === "function"

export const resolveOptions = <R>(options: PumpOptions<R>): Effect.Effect<ResolvedOptions<R>, InvalidOptions> =>
  Effect.gen(function* () {
    const bufferSize = yield* integer("bufferSize", options.bufferSize, 1000, 1, "an integer >= 1")
    const maxRedeliveryCount = yield* integer(
      "maxRedeliveryCount",
      options.maxRedeliveryCount,
      3,
      -1,
      "an integer >= 0, or -1 to retry forever"
    )
    const achknowledgeTimeoutMs = yield* integer(
      "achknowledgeTimeoutMs",
      options.achknowledgeTimeoutMs,
      5000,
      1,
      "an integer number of milliseconds >= 1"
    )
    const handlerTimeoutMs = yield* integer(
      "handlerTimeoutMs",
      options.handlerTimeoutMs,
      30_000,
      1,
      "an integer number of milliseconds >= 1"
    )
    if (options.includeSensitiveData !== undefined && typeof options.includeSensitiveData !== "boolean") {
      return yield* Effect.fail(
        InvalidOptions.of("includeSensitiveData", options.includeSensitiveData, "true or false")
      )
    }
    let stopAt: number | undefined
    if (options.stopAt !== undefined && options.stopAt !== null) {
      const ms = options.stopAt instanceof Date ? options.stopAt.getTime() : Number.NaN
      if (!Number.isFinite(ms)) return yield* Effect.fail(InvalidOptions.of("stopAt", options.stopAt, "a valid Date"))
      stopAt = ms
    }
    const processor = options.processor
    let concurrency = 1
    if (processor !== undefined) {
      const perEvent = isPerEvent(processor)
      if (!perEvent && typeof (processor as BatchProcessor<R>).handler !== "function") {
        return yield* Effect.fail(
          InvalidOptions.of("processor", processor, "an object with a handler(events) or a handleEvent(event) function")
        )
      }
      concurrency = yield* integer("processor.concurrency", processor.concurrency, 1, 1, "an integer >= 1")
      if (processor.failedHandler !== undefined && typeof processor.failedHandler !== "function") {
        return yield* Effect.fail(InvalidOptions.of("processor.failedHandler", processor.failedHandler, "a function"))
      }
    }
    const baseDelayMs = yield* integer(
      "redelivery.baseDelayMs",
      options.redelivery?.baseDelayMs,
      250,
      1,
      "an integer >= 1"
    )
    const maxDelayMs = yield* integer(
      "redelivery.maxDelayMs",
      options.redelivery?.maxDelayMs,
      30_000,
      baseDelayMs,
      `an integer >= redelivery.baseDelayMs (${baseDelayMs})`
    )
    const liveWaitTimeoutMs = yield* integer(
      "liveWaitTimeoutMs",
      options.liveWaitTimeoutMs,
      20_000,
      1,
      "an integer >= 1"
    )
    const rolloverSettleMs = yield* integer("rolloverSettleMs", options.rolloverSettleMs, 5_000, 0, "an integer >= 0")
    const drainTimeoutMs = yield* integer("drainTimeoutMs", options.drainTimeoutMs, 10_000, 0, "an integer >= 0")
    const maxPageSize = yield* integer("maxPageSize", options.maxPageSize, 1000, 1, "an integer >= 1")
    const checkpointEveryEvents = yield* integer(
      "checkpoint.everyEvents",
      options.checkpoint?.everyEvents,
      1,
      1,
      "an integer >= 1"
    )
    const checkpointIntervalMs = yield* integer(
      "checkpoint.intervalMs",
      options.checkpoint?.intervalMs,
      0,
      0,
      "an integer number of milliseconds >= 0"
    )
    const supervisionBase = yield* integer(
      "supervision.baseDelayMs",
      options.supervision?.baseDelayMs,
      500,
      1,
      "an integer >= 1"
    )
    const supervisionMax = yield* integer(
      "supervision.maxDelayMs",
      options.supervision?.maxDelayMs,
      30_000,
      supervisionBase,
      `an integer >= supervision.baseDelayMs (${supervisionBase})`
    )
    const pageSize = Math.min(maxPageSize, bufferSize)
    return {
      bufferSize,
      maxRedeliveryCount,
      achknowledgeTimeoutMs,
      handlerTimeoutMs,
      includeSensitiveData: options.includeSensitiveData ?? false,
      stopAt,
      processor,
      concurrency,
      redeliverySchedule: cappedBackoff(baseDelayMs, maxDelayMs),
      liveWaitTimeoutMs,
      rolloverSettleMs,
      drainTimeoutMs,
      maxPageSize: pageSize,
      readPageSize: maxPageSize,
      // When the next page may be requested. A buffer of two pages or more still holds at least a page while the next
      // one is on its way, so it waits for room for a whole page; a smaller one may ask at half a page (at least 1),
      // when the fetch loop judges that the overlap pays (BucketWalker), and otherwise waits for a whole page.
      refillFreeSlots: bufferSize >= 2 * pageSize ? pageSize : Math.max(1, Math.ceil(pageSize / 2)),
      checkpointEveryEvents,
      checkpointIntervalMs,
      supervisionSchedule: cappedBackoff(supervisionBase, supervisionMax)
    }
  })
