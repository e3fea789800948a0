/**
 * The engine's public Effect API.
 *
 * - `DataPump.make(options)` builds a controller in the current scope: `start`, `stop`, `restart`, pull mode
 *   (`reserve` / `acknowledge` / `fail`), `onFinalyFailed`, `snapshot`.
 * - `DataPump.run(options)` starts a pump and runs until it stops (a reached `stopAt`, or a fatal error); give it to
 *   `Effect.runFork`.
 *
 * Each start or restart runs one *generation*: a fresh buffer and three fibers (fetch walker, processor,
 * checkpointer) in their own scope. Deliveries are tied to their generation's buffer, so an acknowledgement from
 * before a restart can never move the checkpoint after it.
 */
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Option, Scope, Semaphore } from "effect"
import {
  type CorruptState,
  type DataSourceError,
  type InvalidOptions,
  type InvalidTimeBucket,
  type InvalidTimeUuid,
  PumpLifecycleError,
  type StateStoreError
} from "../domain/errors.ts"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { PumpState, PumpStateInput } from "../domain/PumpState.ts"
import * as TimeBucket from "../domain/TimeBucket.ts"
import { TimeUuid } from "../domain/TimeUuid.ts"
import { DataSource } from "../services/DataSource.ts"
import { type Buffer, type BufferSnapshot, type Delivery, EventBuffer } from "../services/EventBuffer.ts"
import { Notifier } from "../services/Notifier.ts"
import { PumpMetrics } from "../services/PumpMetrics.ts"
import { StateStore } from "../services/StateStore.ts"
import { startPosition, walk } from "./BucketWalker.ts"
import { makeCheckpointer } from "./Checkpointer.ts"
import { runProcessor } from "./Processor.ts"
import { type PumpOptions, type ResolvedOptions, resolveOptions } from "./PumpOptions.ts"
import { describeError, makeStatus, type StageHealth } from "./PumpStatus.ts"
import { supervised } from "./supervise.ts"

export type PumpServices = DataSource | Notifier | StateStore | EventBuffer | PumpMetrics

/** Why `start` (or `restart`) could not begin a run. */
export type PumpStartError = DataSourceError | StateStoreError | CorruptState | PumpLifecycleError

export type FinalFailureListener = (events: ReadonlyArray<FlowcoreEvent>) => Effect.Effect<void, unknown>

export interface PumpSnapshot {
  readonly generation: number
  readonly running: boolean
  readonly live: boolean
  /** Where the fetcher reads, and the last event it fetched. */
  readonly position: { readonly timeBucket: string | undefined; readonly eventId: string | undefined }
  /** The last saved-or-saveable checkpoint (the watermark). */
  readonly checkpoint: PumpState | undefined
  readonly buffer: {
    readonly depth: number
    readonly open: number
    readonly reserved: number
    readonly sizeBytes: number
    readonly capacity: number
  }
  readonly counters: {
    readonly acknowledged: number
    readonly failed: number
    readonly pulled: number
    readonly redelivered: number
    readonly fetchRetries: number
    readonly checkpointSaves: number
    readonly checkpointFailures: number
  }
  readonly lagSeconds: number
  readonly uptimeMs: number
  readonly health: {
    readonly fetching: StageHealth
    readonly notifier: StageHealth
    readonly checkpointing: StageHealth
  }
}

export interface PumpController {
  /** Loads the checkpoint, resolves the source and begins a run. Fails if already running. */
  readonly start: Effect.Effect<void, PumpStartError>
  /** Stops fetching, drains handlers in flight (up to `drainTimeoutMs`), saves the final checkpoint. Idempotent. */
  readonly stop: Effect.Effect<void>
  /**
   * Moves to `state` (and a new `stopAt`: a Date sets it, `null` removes it, omitted keeps it). The current
   * generation is stopped first; when the pump is stopped, this starts it from `state`.
   */
  readonly restart: (
    state: PumpStateInput,
    stopAt?: Date | null
  ) => Effect.Effect<void, PumpStartError | InvalidTimeBucket | InvalidTimeUuid>
  /** Completes when the current run ends (stop, or a reached `stopAt`); fails with a fatal error. */
  readonly awaitStopped: Effect.Effect<void, StateStoreError>
  readonly isRunning: Effect.Effect<boolean>
  /** Pull mode: up to `max` events, waiting until at least one exists; empty once the pump stops. */
  readonly reserve: (max: number) => Effect.Effect<ReadonlyArray<FlowcoreEvent>>
  /** Pull mode with the delivery token, for exact acknowledgements. */
  readonly reserveDelivery: (max: number) => Effect.Effect<Delivery>
  readonly acknowledge: (eventIds: ReadonlyArray<string>, deliveryId?: number) => Effect.Effect<number>
  readonly fail: (eventIds: ReadonlyArray<string>, deliveryId?: number) => Effect.Effect<number>
  /** Listeners awaited (after the failed handler) for every event that finally failed. */
  readonly onFinalyFailed: (listener: FinalFailureListener) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<PumpSnapshot>
}

interface Generation {
  readonly id: number
  readonly scope: Scope.Closeable
  readonly buffer: Buffer
  readonly walker: Fiber.Fiber<void>
  readonly processor: Fiber.Fiber<void>
  readonly checkpointer: Fiber.Fiber<never, StateStoreError>
  readonly flush: Effect.Effect<void, StateStoreError>
}

interface Session {
  readonly done: Deferred.Deferred<void, StateStoreError>
}

const emptySnapshot: BufferSnapshot = {
  held: 0,
  unsaved: 0,
  open: 0,
  reserved: 0,
  bytes: 0,
  capacity: 0,
  acknowledged: 0,
  failed: 0,
  redelivered: 0,
  ignoredAcks: 0,
  watermark: undefined,
  watermarkVersion: 0,
  settled: 0
}

const validateState = (state: PumpStateInput): Effect.Effect<PumpState, InvalidTimeBucket | InvalidTimeUuid> =>
  Effect.gen(function* () {
    const timeBucket = yield* TimeBucket.parse(state?.timeBucket)
    if (state.eventId === undefined || state.eventId === null) return { timeBucket }
    const parsed = TimeUuid.parse(state.eventId)
    if (!(parsed instanceof TimeUuid)) return yield* parsed
    return { timeBucket, eventId: state.eventId }
  })

export const make = <R = never>(
  pumpOptions: PumpOptions<R>
): Effect.Effect<PumpController, InvalidOptions, Scope.Scope | PumpServices | R> =>
  Effect.gen(function* () {
    const resolved = yield* resolveOptions(pumpOptions)
    const dataSource = yield* DataSource
    const notifier = yield* Notifier
    const store = yield* StateStore
    const buffers = yield* EventBuffer
    const metrics = yield* PumpMetrics
    const context = yield* Effect.context<R>()
    const controllerScope = yield* Effect.scope
    const lock = yield* Semaphore.make(1)
    const status = makeStatus()
    const listeners: Array<FinalFailureListener> = []

    let stopAt = resolved.stopAt
    let current: Generation | undefined
    let stopping: Generation | undefined
    let session: Session | undefined
    let retired: BufferSnapshot = emptySnapshot
    // Buffers live one generation; finished generations' counts are kept so the snapshot's counters never drop.
    const finished = { acknowledged: 0, failed: 0, redelivered: 0 }

    const options = (): ResolvedOptions<R> => ({ ...resolved, stopAt })

    const onFinalFailure = (events: ReadonlyArray<FlowcoreEvent>, reason: unknown): Effect.Effect<void> =>
      Effect.gen(function* () {
        yield* Effect.logWarning("Events finally failed after their redeliveries", {
          count: events.length,
          eventIds: events.slice(0, 10).map((event) => event.eventId),
          reason: describeError(reason)
        })
        const failedHandler = resolved.processor?.failedHandler
        const handlers: Array<FinalFailureListener> =
          failedHandler === undefined ? [...listeners] : [failedHandler as FinalFailureListener, ...listeners]
        for (const handler of handlers) {
          yield* handler(events).pipe(
            Effect.catchCause((cause) => Effect.logError("A failed-events handler failed", { cause: String(cause) }))
          )
        }
      }).pipe(Effect.provideContext(context)) as Effect.Effect<void>

    /**
     * Tears a generation down: fetcher first, then handlers and failed handlers (drained, within one drain timeout),
     * then the final checkpoint, which so covers the events they settle.
     */
    const shutdown = (generation: Generation) =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(generation.walker)
        yield* generation.buffer.close
        const drained = yield* Fiber.await(generation.processor).pipe(
          Effect.andThen(generation.buffer.awaitFailedHandlers),
          Effect.timeoutOption(Duration.millis(resolved.drainTimeoutMs))
        )
        if (Option.isNone(drained)) {
          yield* Effect.logWarning("Handlers still running after the drain timeout; interrupting them", {
            drainTimeoutMs: resolved.drainTimeoutMs
          })
          yield* Fiber.interrupt(generation.processor)
        }
        yield* Fiber.interrupt(generation.checkpointer)
        const flushed = yield* generation.flush.pipe(
          Effect.timeoutOption(Duration.millis(Math.max(resolved.drainTimeoutMs, 1000))),
          Effect.exit
        )
        if (Exit.isFailure(flushed) || Option.isNone(flushed.value)) {
          yield* Effect.logError("The final checkpoint could not be saved", {
            cause: Exit.isFailure(flushed) ? String(flushed.cause) : "timed out"
          })
        }
        retired = generation.buffer.snapshot()
        stopping = undefined
        finished.acknowledged += retired.acknowledged
        finished.failed += retired.failed
        finished.redelivered += retired.redelivered
        yield* Scope.close(generation.scope, Exit.void)
      })

    const endSession = (exit: Exit.Exit<void, StateStoreError>) =>
      Effect.gen(function* () {
        const ending = session
        session = undefined
        status.running = false
        if (status.live) metrics.live(false)
        status.live = false
        if (ending !== undefined) yield* Deferred.done(ending.done, exit)
      })

    /** Stops the current generation, if it is still the one given (or any, without one). */
    const stopCurrent = (only?: Generation) =>
      Effect.gen(function* () {
        const generation = current
        if (generation === undefined || (only !== undefined && only !== generation)) return false
        current = undefined
        // Snapshots taken while it drains still see its buffer and counts.
        stopping = generation
        yield* shutdown(generation)
        return true
      })

    const launch = (startState: PumpState | undefined, saveStart: boolean) =>
      Effect.gen(function* () {
        const opts = options()
        // A transient outage at (re)start is retried like any other fetch; only a non-retryable error fails it.
        const buckets = yield* supervised(
          status.fetching,
          "Listing time buckets",
          resolved.supervisionSchedule,
          dataSource.timeBuckets({ refresh: true }),
          { while: (error) => error.retryable, onRetry: () => status.fetchRetries++ }
        )
        const now = yield* Clock.currentTimeMillis
        const start = startPosition(buckets, startState, now)
        const initial: PumpState = startState ?? {
          timeBucket: start.bucket,
          ...(start.afterEventId === undefined ? {} : { eventId: start.afterEventId })
        }
        const scope = yield* Scope.make()
        // Sequential batches write the checkpoint in their own transaction; a background save of an older
        // watermark could land after a newer commit and move it back, so only the start and the final flush save,
        // and settled events are released at once (their transaction was the save).
        const checkpointsInHandler =
          opts.processor !== undefined && "sequential" in opts.processor && opts.processor.sequential === true
        const buffer = yield* buffers
          .make({
            capacity: opts.bufferSize,
            maxRedeliveryCount: opts.maxRedeliveryCount,
            redeliverySchedule: opts.redeliverySchedule,
            onFinalFailure,
            initialWatermark: initial,
            releaseOn: checkpointsInHandler ? "settle" : "save"
          })
          .pipe(Scope.provide(scope))
        const checkpointer = makeCheckpointer({ buffer, store, metrics, status, options: opts })
        // A run that starts without a saved position saves where it starts, so a crash before the first event
        // still resumes from here instead of from a later live edge.
        if (saveStart) yield* checkpointer.save(initial)
        const id = ++status.generation
        status.running = true
        status.live = false
        status.fetchBucket = start.bucket
        status.startedAt ??= now
        const fork = <A, E>(effect: Effect.Effect<A, E, R>) =>
          Effect.forkIn(Effect.provideContext(effect, context), scope)
        const walker = yield* fork(
          walk(
            { dataSource, notifier, buffer, metrics, status, options: opts },
            {
              ...start,
              buckets
            }
          )
        )
        const processor = yield* fork(runProcessor({ buffer, metrics, options: opts, onFinalFailure }))
        const checkpointFiber = yield* fork(checkpointsInHandler ? Effect.never : checkpointer.loop)
        const generation: Generation = {
          id,
          scope,
          buffer,
          walker,
          processor,
          checkpointer: checkpointFiber,
          flush: checkpointer.flush
        }
        current = generation
        yield* Effect.logDebug("Pump generation started", {
          generation: id,
          timeBucket: start.bucket,
          afterEventId: start.afterEventId ?? "",
          stopAt: stopAt === undefined ? "" : new Date(stopAt).toISOString()
        })
        // Watch the generation from the controller's scope: it ends by reaching stopAt, or by a fatal save error.
        yield* Effect.gen(function* () {
          const reason = yield* Effect.raceFirst(
            Effect.as(Fiber.join(walker), "completed" as const),
            Effect.flip(Fiber.join(checkpointFiber))
          )
          if (reason === "completed") {
            yield* buffer.awaitEmpty
            yield* lock.withPermits(1)(
              Effect.gen(function* () {
                if (yield* stopCurrent(generation)) {
                  yield* Effect.logInfo("Pump reached stopAt and stopped", { generation: id })
                  yield* endSession(Exit.void)
                }
              })
            )
          } else {
            yield* Effect.logError("Saving the checkpoint failed fatally; stopping the pump", {
              error: reason.message
            })
            yield* lock.withPermits(1)(
              Effect.gen(function* () {
                if (yield* stopCurrent(generation)) yield* endSession(Exit.fail(reason))
              })
            )
          }
        }).pipe(Effect.forkIn(controllerScope))
      })

    const beginSession = (state: PumpState | undefined, saveStart: boolean) =>
      Effect.gen(function* () {
        yield* supervised(
          status.fetching,
          "Resolving the data source",
          resolved.supervisionSchedule,
          dataSource.resolve,
          { while: (error) => error.retryable, onRetry: () => status.fetchRetries++ }
        )
        const done = yield* Deferred.make<void, StateStoreError>()
        yield* launch(state, saveStart)
        session = { done }
      })

    const start: Effect.Effect<void, PumpStartError> = lock.withPermits(1)(
      Effect.gen(function* () {
        if (session !== undefined) {
          return yield* new PumpLifecycleError({
            operation: "start",
            state: "running",
            message: "The pump is already running; call stop() or restart() instead"
          })
        }
        const loaded = yield* store.load
        const state = Option.getOrUndefined(loaded)
        yield* beginSession(state, state === undefined)
        yield* Effect.logDebug("Pump started", { from: state === undefined ? "live edge" : state.timeBucket })
      })
    )

    const stop: Effect.Effect<void> = lock.withPermits(1)(
      Effect.gen(function* () {
        if (session === undefined) return
        yield* stopCurrent()
        yield* endSession(Exit.void)
        yield* Effect.logDebug("Pump stopped")
      })
    )

    const restart = (state: PumpStateInput, newStopAt?: Date | null) =>
      Effect.gen(function* () {
        const target = yield* validateState(state)
        yield* lock.withPermits(1)(
          Effect.gen(function* () {
            if (newStopAt === null) stopAt = undefined
            else if (newStopAt instanceof Date) stopAt = newStopAt.getTime()
            if (session === undefined) {
              yield* beginSession(target, true)
            } else {
              yield* stopCurrent()
              // The old generation is gone: if the new one cannot begin, the pump is stopped, not "running" idle.
              yield* launch(target, true).pipe(
                Effect.tapError((error) =>
                  Effect.andThen(
                    Effect.logError("Restart failed; the pump is stopped", { error: error.message }),
                    endSession(error._tag === "StateStoreError" ? Exit.fail(error) : Exit.void)
                  )
                )
              )
            }
            yield* Effect.logDebug("Pump restarted", { timeBucket: target.timeBucket, eventId: target.eventId ?? "" })
          })
        )
      })

    const awaitStopped: Effect.Effect<void, StateStoreError> = Effect.suspend(() =>
      session === undefined ? Effect.void : Deferred.await(session.done)
    )

    const reserveDelivery = (max: number): Effect.Effect<Delivery> =>
      Effect.suspend(() =>
        current === undefined
          ? Effect.succeed({ deliveryId: 0, events: [], attempts: [] })
          : current.buffer.reserve(Math.max(1, Math.floor(max)), { expiresInMs: resolved.achknowledgeTimeoutMs })
      )

    const snapshot = Effect.gen(function* () {
      const active = (current ?? stopping)?.buffer.snapshot()
      const buffer = active ?? retired
      const now = yield* Clock.currentTimeMillis
      const result: PumpSnapshot = {
        generation: status.generation,
        running: status.running,
        live: status.live,
        position: { timeBucket: status.fetchBucket, eventId: status.lastFetchedEventId },
        checkpoint: buffer.watermark,
        buffer: {
          depth: buffer.held,
          open: buffer.open,
          reserved: buffer.reserved,
          sizeBytes: buffer.bytes,
          capacity: resolved.bufferSize
        },
        counters: {
          acknowledged: finished.acknowledged + (active?.acknowledged ?? 0),
          failed: finished.failed + (active?.failed ?? 0),
          pulled: status.pulled,
          redelivered: finished.redelivered + (active?.redelivered ?? 0),
          fetchRetries: status.fetchRetries,
          checkpointSaves: status.checkpointSaves,
          checkpointFailures: status.checkpointFailures
        },
        lagSeconds: status.lagSeconds,
        uptimeMs: status.startedAt === undefined ? 0 : now - status.startedAt,
        health: {
          fetching: { ...status.fetching },
          notifier: { ...status.notifier },
          checkpointing: { ...status.checkpointing }
        }
      }
      return result
    })

    yield* Effect.addFinalizer(() => stop)

    return {
      start,
      stop,
      restart,
      awaitStopped,
      isRunning: Effect.sync(() => session !== undefined),
      reserve: (max) => Effect.map(reserveDelivery(max), (delivery) => delivery.events),
      reserveDelivery,
      acknowledge: (ids, deliveryId) => Effect.sync(() => current?.buffer.acknowledge(ids, deliveryId) ?? 0),
      fail: (ids, deliveryId) =>
        Effect.sync(() => current?.buffer.fail(ids, deliveryId, "failed by the consumer") ?? 0),
      onFinalyFailed: (listener) => Effect.sync(() => void listeners.push(listener)),
      snapshot
    } satisfies PumpController
  })

/**
 * Starts a pump and runs it until it stops: when `stopAt` is reached, or with a fatal error. Interrupting the fiber
 * stops the pump gracefully (drain, final checkpoint).
 */
export const run = <R = never>(
  options: PumpOptions<R>
): Effect.Effect<void, InvalidOptions | PumpStartError, PumpServices | R> =>
  Effect.scoped(
    Effect.gen(function* () {
      const pump = yield* make(options)
      yield* pump.start
      yield* pump.awaitStopped
    })
  )
