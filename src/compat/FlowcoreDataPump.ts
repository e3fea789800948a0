/**
 * The Promise facade: the original README's `FlowcoreDataPump.create({...})` API, running on the Effect engine.
 *
 * Each `start` builds the run's services (notifier connection, state store, buffer) in a scope that `stop` closes,
 * so a stopped pump leaves no socket or timer behind. The HTTP data source and metrics live in a runtime shared with
 * `pump.dataSource`; it is released on stop as well and rebuilt on the next use.
 */
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import { Effect, Exit, type Fiber, Layer, ManagedRuntime } from "effect"
import type { FlowcoreConnection } from "../domain/config.ts"
import { PumpLifecycleError } from "../domain/errors.ts"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import { CallbacksStateStore } from "../layers/stateStore/Callbacks.ts"
import * as DataPump from "../pump/DataPump.ts"
import type { PumpOptions } from "../pump/PumpOptions.ts"
import type { DataSource } from "../services/DataSource.ts"
import type { PumpMetrics } from "../services/PumpMetrics.ts"
import { FlowcoreDataSource } from "./FlowcoreDataSource.ts"
import { flowcoreSourceLayer, loggingLayer, makeConnection, runLayer } from "./layers.ts"
import { type FlowcoreDataPumpOptions, type FlowcoreDataPumpState, validateOptions } from "./options.ts"

type FinalFailureHandler = (events: Array<FlowcoreEvent>) => Promise<void> | void

interface Session {
  readonly controller: DataPump.PumpController
  readonly fiber: Fiber.Fiber<void, unknown>
}

const toPromiseHandler =
  (handler: (events: Array<FlowcoreEvent>) => Promise<void> | void) => (events: ReadonlyArray<FlowcoreEvent>) =>
    Effect.tryPromise({
      try: async () => {
        await handler([...events])
      },
      catch: (error) => error
    })

export class FlowcoreDataPump {
  readonly dataSource: FlowcoreDataSource
  readonly #options: FlowcoreDataPumpOptions
  readonly #connection: FlowcoreConnection
  readonly #listeners: Array<FinalFailureHandler> = []
  #runtime: ManagedRuntime.ManagedRuntime<DataSource | PumpMetrics, never> | undefined
  #session: Session | undefined
  #starting: Promise<void> | undefined

  private constructor(options: FlowcoreDataPumpOptions, connection: FlowcoreConnection) {
    this.#options = options
    this.#connection = connection
    this.dataSource = new FlowcoreDataSource(options.dataSource, () => this.#sharedRuntime())
  }

  /** Validates the options (throwing `InvalidOptions` naming the option) and builds a stopped pump. */
  static create(options: FlowcoreDataPumpOptions): FlowcoreDataPump {
    const valid = validateOptions(options)
    const connection = Effect.runSync(Effect.result(makeConnection(valid)))
    if (connection._tag === "Failure") throw connection.failure
    return new FlowcoreDataPump(valid, connection.success)
  }

  get isRunning(): boolean {
    return this.#session !== undefined
  }

  #sharedRuntime(): ManagedRuntime.ManagedRuntime<DataSource | PumpMetrics, never> {
    this.#runtime ??= ManagedRuntime.make(
      flowcoreSourceLayer(this.#connection).pipe(
        Layer.provideMerge(loggingLayer(this.#options.logger)),
        Layer.provideMerge(this.#options.openTelemetry === true ? OtelTracer.layerGlobal : Layer.empty)
      )
    )
    return this.#runtime
  }

  #engineOptions(): PumpOptions {
    const o = this.#options
    const processor = o.processor
    return {
      bufferSize: o.bufferSize,
      maxRedeliveryCount: o.maxRedeliveryCount,
      achknowledgeTimeoutMs: o.achknowledgeTimeoutMs,
      handlerTimeoutMs: o.handlerTimeoutMs,
      includeSensitiveData: o.includeSensitiveData,
      stopAt: o.stopAt ?? undefined,
      processor:
        processor === undefined
          ? undefined
          : {
              concurrency: processor.concurrency,
              handler: toPromiseHandler(processor.handler),
              failedHandler:
                processor.failedHandler === undefined ? undefined : toPromiseHandler(processor.failedHandler)
            }
    }
  }

  /**
   * Starts the pump. Resolves once it runs; rejects if the state cannot be loaded or the source cannot be resolved
   * (the pump then stays stopped and can be started again). `callback` is called when the run ends, with the error
   * if it ended in one.
   */
  start(callback?: (error?: Error) => void): Promise<void> {
    return this.#begin(undefined, callback)
  }

  #begin(
    restartTo: { state: FlowcoreDataPumpState; stopAt?: Date | null } | undefined,
    callback?: (error?: Error) => void
  ) {
    if (this.#session !== undefined || this.#starting !== undefined) {
      return Promise.reject(
        new PumpLifecycleError({
          operation: "start",
          state: "running",
          message: "The pump is already running; call stop() or restart() instead"
        })
      )
    }
    const runtime = this.#sharedRuntime()
    const stateStore = CallbacksStateStore.layer({
      getState: () => this.#options.stateManager.getState(),
      setState: (state) => this.#options.stateManager.setState(state)
    })
    const listeners = this.#listeners
    const starting = new Promise<void>((resolve, reject) => {
      let started = false
      const program = Effect.gen({ self: this }, function* () {
        const controller = yield* DataPump.make(this.#engineOptions())
        yield* controller.onFinalyFailed((events) =>
          Effect.tryPromise({
            try: async () => {
              for (const listener of listeners) await listener([...events])
            },
            catch: (error) => error
          })
        )
        if (restartTo === undefined) yield* controller.start
        else yield* controller.restart(restartTo.state, restartTo.stopAt)
        started = true
        this.#session = { controller, fiber }
        resolve()
        yield* controller.awaitStopped
      }).pipe(
        Effect.scoped,
        Effect.provide(Layer.mergeAll(runLayer(this.#connection, this.#options.notifier), stateStore))
      )
      const fiber: Fiber.Fiber<void, unknown> = runtime.runFork(program)
      fiber.addObserver((exit) => {
        this.#session = undefined
        const error = Exit.isFailure(exit) ? toError(exit) : undefined
        if (!started) reject(error ?? new Error("The pump was stopped while starting"))
        else callback?.(error)
      })
    })
    this.#starting = starting
    return starting.finally(() => {
      this.#starting = undefined
    })
  }

  /** Stops fetching, lets handlers in flight finish, saves the final state and closes every connection. */
  async stop(): Promise<void> {
    await this.#starting?.catch(() => undefined)
    const session = this.#session
    if (session !== undefined) {
      await this.#sharedRuntime().runPromise(session.controller.stop)
      await new Promise<void>((resolve) => session.fiber.addObserver(() => resolve()))
    }
    const runtime = this.#runtime
    this.#runtime = undefined
    await runtime?.dispose()
  }

  /**
   * Moves the running pump to `state` (and `stopAt`: a Date sets it, `null` removes it, omitted keeps it). On a
   * stopped pump this starts it from `state`.
   */
  async restart(state: FlowcoreDataPumpState, stopAt?: Date | null): Promise<void> {
    await this.#starting?.catch(() => undefined)
    const session = this.#session
    if (session === undefined) return this.#begin(stopAt === undefined ? { state } : { state, stopAt })
    await this.#sharedRuntime().runPromise(session.controller.restart(state, stopAt))
  }

  /** Pull mode: up to `amount` events, waiting until some exist; `[]` once the pump stops. */
  async reserve(amount: number): Promise<Array<FlowcoreEvent>> {
    const session = this.#session
    if (session === undefined) return []
    return [...(await this.#sharedRuntime().runPromise(session.controller.reserve(amount)))]
  }

  async acknowledge(eventIds: ReadonlyArray<string>): Promise<void> {
    const session = this.#session
    if (session !== undefined) await this.#sharedRuntime().runPromise(session.controller.acknowledge(eventIds))
  }

  async fail(eventIds: ReadonlyArray<string>): Promise<void> {
    const session = this.#session
    if (session !== undefined) await this.#sharedRuntime().runPromise(session.controller.fail(eventIds))
  }

  /** Called (and awaited) with events that exhausted their redeliveries, after the processor's failedHandler. */
  onFinalyFailed(handler: FinalFailureHandler): void {
    this.#listeners.push(handler)
  }

  /** Position, buffer, counters, lag and per-stage health: the source for health endpoints. */
  async snapshot(): Promise<DataPump.PumpSnapshot | undefined> {
    const session = this.#session
    return session === undefined ? undefined : this.#sharedRuntime().runPromise(session.controller.snapshot)
  }
}

const toError = (exit: Exit.Exit<unknown, unknown>): Error => {
  if (Exit.isSuccess(exit)) return new Error("no error")
  const reason = exit.cause.reasons[0]
  const value =
    reason === undefined
      ? undefined
      : reason._tag === "Fail"
        ? reason.error
        : reason._tag === "Die"
          ? reason.defect
          : undefined
  return value instanceof Error ? value : new Error(value === undefined ? "The pump was interrupted" : String(value))
}
