/**
 * Lifecycle: validates the options, replays the persistence file, applies the config, connects NATS, listens. Every
 * resource is acquired with a release in one scope, so a failed start undoes what it did and `close()` (or closing
 * the caller's scope) tears everything down in reverse order.
 */
import { createServer, type Server } from "node:http"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { DEFAULT_API_KEY, type EmulatorConfig, EmulatorError, type EmulatorFaults, validateConfig } from "./config.ts"
import { EmulatorState, type IngestInput } from "./core.ts"
import { Credentials, FaultState, type HttpStats, makeHandlers } from "./http.ts"
import { type JournalLine, openJournal, replay } from "./journal.ts"
import { NotificationHub } from "./notifications.ts"
import { RegistryConflict } from "./registry.ts"

export interface EmulatorOptions {
  /** Default 0 (a free port). */
  readonly port?: number
  /** Default "127.0.0.1". */
  readonly host?: string
  readonly config?: EmulatorConfig
  /** true = no auth checks at all. */
  readonly open?: boolean
  /** Default true: unknown tenant / data core / flow type / event type names are created on first ingest. */
  readonly autoCreate?: boolean
  /** Append-only NDJSON file; a restarted emulator reloads its resources and events. */
  readonly persistPath?: string
  /** Also publish notifications on NATS. */
  readonly nats?: { readonly servers: string | ReadonlyArray<string> }
  readonly faults?: Partial<EmulatorFaults>
}

export interface EmulatorStats {
  /** Events stored (replayed ones included). */
  readonly events: number
  /** HTTP requests and WebSocket upgrade attempts, admin endpoints excluded. */
  readonly requests: number
  /** The same, per path (query string excluded). */
  readonly byPath: Readonly<Record<string, number>>
  /** Currently open /notifications sockets. */
  readonly wsConnections: number
  /** /notifications sockets accepted since start. */
  readonly wsConnectionsTotal: number
  /** Bodies of POST /api/v1/pump-pulse, oldest first. */
  readonly pulses: ReadonlyArray<unknown>
  readonly natsPublished: number
  readonly natsErrors: number
}

export interface EmulatorIds {
  readonly tenantId: string
  readonly dataCoreId: string
  readonly flowTypeId: string
  readonly eventTypeIds: Readonly<Record<string, string>>
}

export interface Emulator {
  /** "http://127.0.0.1:<port>": the base URL override for the pump and the SDK. */
  readonly url: string
  readonly port: number
  /** Synchronous; returns the minted event id; notifies WebSocket and NATS subscribers. */
  ingest(input: IngestInput): string
  /** Fast path for seeding many events (validated first: one bad input stores nothing). */
  ingestMany(inputs: ReadonlyArray<IngestInput>): ReadonlyArray<string>
  /** The ids behind names (`dataCore` may be an id); throws `EmulatorError` when something does not exist. */
  ids(tenant: string, dataCore: string, flowType: string): EmulatorIds
  /** Validates and applies a partial update; throws `EmulatorError` naming a bad field. */
  setFaults(faults: Partial<EmulatorFaults>): void
  readonly faults: EmulatorFaults
  /** Abruptly destroys every open /notifications socket now. */
  dropWebSockets(): void
  readonly stats: EmulatorStats
  /** Closes server, sockets, NATS and the file; idempotent. */
  close(): Promise<void>
}

const hostForUrl = (host: string) => (host.includes(":") ? `[${host}]` : host)

const fail = (message: string, cause?: unknown) =>
  new EmulatorError(cause === undefined ? { message } : { message, cause })

const listen = (server: Server, port: number, host: string) =>
  Effect.callback<number, EmulatorError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(fail(`Cannot listen on ${host}:${port}: ${cause.message}`, cause)))
    server.once("error", onError)
    server.listen(port, host, () => {
      server.off("error", onError)
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : port))
    })
  })

const build = (options: EmulatorOptions, close: () => Promise<void>) =>
  Effect.gen(function* () {
    const config = yield* validateConfig(options.config ?? {}, "options.config")
    const port = options.port ?? 0
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      return yield* fail(`Invalid option "port": expected an integer 0..65535, got ${JSON.stringify(port)}`)
    }
    const host = options.host ?? "127.0.0.1"
    const faults = new FaultState()
    if (options.faults !== undefined) {
      yield* Effect.try({
        try: () => faults.set(options.faults),
        catch: (error) =>
          error instanceof EmulatorError ? error : fail(`Invalid option "faults": ${String(error)}`, error)
      })
    }
    const state = new EmulatorState({ autoCreate: options.autoCreate ?? true })

    const persistPath = options.persistPath
    if (persistPath !== undefined) {
      const replayed = yield* replay(persistPath)
      const events: Array<{ line: Extract<JournalLine, { k: "event" }>; lineNumber: number }> = []
      for (const { line, lineNumber } of replayed.lines) {
        if (line.k === "event") {
          events.push({ line, lineNumber })
          continue
        }
        try {
          state.registry.replay(line)
        } catch (error) {
          if (error instanceof RegistryConflict) {
            return yield* fail(`Persistence file ${persistPath}, line ${lineNumber}: ${error.message}`)
          }
          throw error
        }
      }
      const dangling = state.restore(events)
      if (dangling !== undefined) return yield* fail(`Persistence file ${persistPath}, ${dangling}`)
      const journal = yield* Effect.acquireRelease(openJournal(persistPath), (journal) =>
        Effect.sync(() => journal.close())
      )
      state.attachJournal(journal)
    }
    try {
      state.registry.applyConfig(config)
    } catch (error) {
      if (error instanceof RegistryConflict) return yield* fail(`Invalid emulator config: ${error.message}`)
      throw error
    }
    state.flush()

    const hub = new NotificationHub(() => faults.current)
    state.attachSink(hub)
    if (options.nats !== undefined) {
      const servers = typeof options.nats.servers === "string" ? [options.nats.servers] : [...options.nats.servers]
      const nats = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => connect({ servers, reconnectTimeWait: 250, maxReconnectAttempts: -1 }),
          catch: (cause) => fail(`Cannot connect to NATS at ${servers.join(", ")}: ${String(cause)}`, cause)
        }),
        (nats: NatsConnection) =>
          Effect.promise(() => nats.drain().catch(() => nats.close())).pipe(
            Effect.timeout("2 seconds"),
            Effect.catch(() => Effect.promise(() => nats.close())),
            Effect.tap(() => Effect.sync(() => hub.attachNats(undefined)))
          )
      )
      hub.attachNats(nats)
    }

    const credentials = new Credentials(
      options.open === true,
      config.apiKeys ?? [DEFAULT_API_KEY],
      config.bearerTokens ?? []
    )
    const stats: HttpStats = { requests: 0, byPath: new Map(), pulses: [] }
    const snapshot = (): EmulatorStats => {
      const hubStats = hub.stats
      return {
        events: state.eventCount,
        requests: stats.requests,
        byPath: Object.fromEntries(stats.byPath),
        wsConnections: hubStats.open,
        wsConnectionsTotal: hubStats.total,
        pulses: [...stats.pulses],
        natsPublished: hubStats.natsPublished,
        natsErrors: hubStats.natsErrors
      }
    }
    const handlers = makeHandlers({ state, hub, credentials, faults, stats, statsJson: snapshot })
    const server = createServer({ keepAlive: true, noDelay: true }, handlers.request)
    server.keepAliveTimeout = 30_000
    server.on("upgrade", handlers.upgrade)
    const boundPort = yield* Effect.acquireRelease(listen(server, port, host), () =>
      Effect.callback<void>((resume) => {
        handlers.cancelPending()
        // Upgraded sockets are not HTTP connections: close them first or server.close() would wait for them.
        hub.close()
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )

    let closed = false
    yield* Effect.addFinalizer(() => Effect.sync(() => (closed = true)))
    const open = (what: string) => {
      if (closed) throw fail(`${what}: the emulator is closed`)
    }

    const ids = (tenantName: string, dataCore: string, flowTypeName: string): EmulatorIds => {
      const registry = state.registry
      const tenant = registry.tenantByName(tenantName)
      if (tenant === undefined) throw fail(`ids: tenant "${tenantName}" does not exist`)
      const dc = registry.dataCoreByIdOrName(tenant.id, dataCore)
      if (dc === undefined) throw fail(`ids: data core "${dataCore}" of tenant "${tenantName}" does not exist`)
      const flowType = registry.flowTypeByName(dc.id, flowTypeName)
      if (flowType === undefined)
        throw fail(`ids: flow type "${flowTypeName}" of data core "${dc.name}" does not exist`)
      return {
        tenantId: tenant.id,
        dataCoreId: dc.id,
        flowTypeId: flowType.id,
        eventTypeIds: Object.fromEntries(registry.eventTypesOf(flowType.id).map((et) => [et.name, et.id]))
      }
    }

    return {
      url: `http://${hostForUrl(host)}:${boundPort}`,
      port: boundPort,
      ingest: (input) => {
        open("ingest")
        return state.ingestInputs([input])[0] as string
      },
      ingestMany: (inputs) => {
        open("ingestMany")
        return state.ingestInputs(inputs)
      },
      ids,
      setFaults: (patch) => {
        faults.set(patch)
      },
      get faults() {
        return faults.current
      },
      dropWebSockets: () => {
        hub.dropAll()
      },
      get stats() {
        return snapshot()
      },
      close
    } satisfies Emulator
  })

/** Starts an emulator that lives until its `close()`; failures are `EmulatorError`. */
const acquire = (options: EmulatorOptions): Effect.Effect<Emulator, EmulatorError> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    let closing: Promise<void> | undefined
    const close = () => {
      closing ??= Effect.runPromise(Scope.close(scope, Exit.void))
      return closing
    }
    return yield* build(options, close).pipe(
      Scope.provide(scope),
      Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
    )
  })

/** Starts an emulator (Promise API); `close()` stops it. */
export const start = (options: EmulatorOptions = {}): Promise<Emulator> => Effect.runPromise(acquire(options))

/** Scoped Effect form: starts on acquire, closes when the scope closes. */
export const make = (options: EmulatorOptions = {}): Effect.Effect<Emulator, EmulatorError, Scope.Scope> =>
  Effect.acquireRelease(acquire(options), (emulator) => Effect.promise(() => emulator.close()))

/** The emulator as a service, for tests and programs built from layers. */
export class FlowcoreEmulator extends Context.Service<FlowcoreEmulator, Emulator>()(
  "@flowcore/data-pump/emulator/FlowcoreEmulator"
) {
  static layer(options: EmulatorOptions = {}): Layer.Layer<FlowcoreEmulator, EmulatorError> {
    return Layer.effect(FlowcoreEmulator, make(options))
  }
}
