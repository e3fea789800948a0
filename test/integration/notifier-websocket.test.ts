/**
 * The WebSocket notifier against the local Flowcore emulator: real URL derivation from the base URL override, query
 * auth, the subscribe frame, notification frames, server-side drops and stalled upgrades.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Logger, Option, Redacted, Scope } from "effect"
import { apiKeyAuth, type FlowcoreConnection } from "../../src/domain/config.ts"
import { DEFAULT_API_KEY, type Emulator, make as makeEmulator } from "../../src/emulator/index.ts"
import { WebSocketNotifier, type WebSocketNotifierOptions } from "../../src/layers/notifier/WebSocket.ts"
import { DataSource, type ResolvedSource } from "../../src/services/DataSource.ts"
import { Notifier, type NotifierStatus, type WakeReason } from "../../src/services/Notifier.ts"
import { noopRecorder, PumpMetrics } from "../../src/services/PumpMetrics.ts"
import { engineFetch, eventually, leakChecked, statusUntil } from "../notifier-support.ts"

const TENANT = "acme"
const DATA_CORE = "shop"
const FLOW_TYPE = "orders.0"
const WATCHED = ["order.created.0", "order.paid.0"] as const
const OTHER = "order.cancelled.0"

const emulator = makeEmulator({
  config: {
    tenants: [
      {
        name: TENANT,
        dataCores: [
          {
            name: DATA_CORE,
            flowTypes: [{ name: FLOW_TYPE, eventTypes: [...WATCHED, OTHER].map((name) => ({ name })) }]
          }
        ]
      }
    ]
  }
})

const resolvedFor = (emu: Emulator): ResolvedSource => {
  const ids = emu.ids(TENANT, DATA_CORE, FLOW_TYPE)
  return {
    tenant: TENANT,
    dataCore: DATA_CORE,
    dataCoreId: ids.dataCoreId,
    flowType: FLOW_TYPE,
    flowTypeId: ids.flowTypeId,
    eventTypes: [...WATCHED],
    eventTypeIds: WATCHED.map((name) => ids.eventTypeIds[name] ?? "")
  }
}

const ingest = (emu: Emulator, eventType: string) =>
  Effect.sync(() => emu.ingest({ tenant: TENANT, dataCore: DATA_CORE, flowType: FLOW_TYPE, eventType, payload: {} }))

interface LogLine {
  readonly level: string
  readonly text: string
}

interface Harness {
  readonly emu: Emulator
  readonly notifier: Notifier["Service"]
  readonly logs: ReadonlyArray<LogLine>
  readonly reconnectMetrics: () => number
  readonly statusUntil: (label: string, check: (status: NotifierStatus) => boolean) => Effect.Effect<void>
  /** Closes the notifier's scope; `None` if that took longer than 1 s. */
  readonly close: Effect.Effect<Option.Option<void>>
}

/**
 * Starts an emulator and a notifier pointed at it (notifier scope owned by the test), runs the body, then checks
 * that the notifier left no socket open on the emulator and that nothing at all outlives the test.
 */
const harness = <A, E>(
  body: (h: Harness) => Effect.Effect<A, E>,
  configure: {
    readonly options?: Partial<WebSocketNotifierOptions>
    readonly connection?: Partial<FlowcoreConnection>
    readonly source?: (emu: Emulator, resolved: ResolvedSource) => ResolvedSource
  } = {}
) =>
  leakChecked(
    Effect.gen(function* () {
      const emu = yield* emulator
      const resolved = resolvedFor(emu)
      const logs: Array<LogLine> = []
      let reconnectMetrics = 0
      const connection: FlowcoreConnection = {
        auth: yield* apiKeyAuth(DEFAULT_API_KEY),
        source: { tenant: TENANT, dataCore: DATA_CORE, flowType: FLOW_TYPE, eventTypes: [...WATCHED] },
        noTranslation: false,
        directMode: false,
        baseUrlOverride: emu.url,
        ...configure.connection
      }
      const deps = Layer.mergeAll(
        Layer.succeed(
          DataSource,
          DataSource.of({
            resolve: Effect.succeed(configure.source?.(emu, resolved) ?? resolved),
            timeBuckets: () => Effect.succeed([]),
            fetchPage: () => Effect.succeed({ events: [] })
          })
        ),
        Layer.succeed(PumpMetrics, { ...noopRecorder, notifierReconnected: () => reconnectMetrics++ }),
        Logger.layer([
          Logger.make(({ logLevel, message }) => {
            logs.push({ level: logLevel, text: (Array.isArray(message) ? message : [message]).map(String).join(" ") })
          })
        ])
      )
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        WebSocketNotifier.layer({ connection, ...configure.options }).pipe(Layer.provide(deps)),
        scope
      )
      const notifier = Context.get(context, Notifier)
      yield* body({
        emu,
        notifier,
        statusUntil: (label, check) => statusUntil(notifier, label, check),
        logs,
        reconnectMetrics: () => reconnectMetrics,
        close: Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("1 second"))
      }).pipe(Effect.onExit(() => Scope.close(scope, Exit.void)))
      yield* eventually("the notifier closed its socket when its scope closed", () => emu.stats.wsConnections === 0)
      for (const line of logs) expect(line.text).not.toContain(DEFAULT_API_KEY)
    })
  )

/** The emulator takes the subscribe frame a moment after the socket opens: ingest until the wait wakes. */
const ingestUntilWoken = (emu: Emulator, wait: Fiber.Fiber<WakeReason>, eventType: string = WATCHED[0]) =>
  ingest(emu, eventType).pipe(
    Effect.andThen(Effect.sleep("30 millis")),
    Effect.repeat({ until: () => wait.pollUnsafe() !== undefined, times: 150 }),
    Effect.andThen(Fiber.join(wait))
  )

/** Waits until a matching notification has been seen once, i.e. the subscription is live on the emulator. */
const subscribed = (h: Harness) =>
  Effect.gen(function* () {
    const wait = yield* Effect.forkChild(h.notifier.wait("10 seconds"))
    expect(yield* ingestUntilWoken(h.emu, wait)).toBe("notified")
    yield* engineFetch
  })

describe("WebSocketNotifier against the emulator", () => {
  it.live("a notification wakes a wait, over one long-lived connection", () =>
    harness((h) =>
      Effect.gen(function* () {
        yield* subscribed(h)
        for (const eventType of [...WATCHED, ...WATCHED]) {
          const wait = yield* Effect.forkChild(h.notifier.wait("10 seconds"))
          yield* Effect.sleep("20 millis")
          yield* ingest(h.emu, eventType)
          expect(yield* Fiber.join(wait)).toBe("notified")
          yield* engineFetch
        }
        expect(h.emu.stats.wsConnectionsTotal).toBe(1)
        const status = yield* h.notifier.status
        expect(status).toMatchObject({ notifier: "websocket", connected: true, reconnects: 0 })
        expect(status.lastNotificationAt).toBeTypeOf("number")
      })
    )
  )

  it.live(
    "a notification that arrives while nobody waits (during a fetch) is latched: the next wait returns at once",
    () =>
      harness((h) =>
        Effect.gen(function* () {
          yield* subscribed(h)
          const seen = (yield* h.notifier.status).lastNotificationAt
          yield* ingest(h.emu, WATCHED[1])
          yield* h.statusUntil("the notification arrived", (status) => status.lastNotificationAt !== seen)
          expect(yield* h.notifier.wait("5 seconds")).toBe("notified")
          expect(yield* h.notifier.wait("200 millis")).toBe("timeout")
        })
      )
  )

  it.live("filters by event type name: another event type of the flow type does not wake", () =>
    harness((h) =>
      Effect.gen(function* () {
        yield* subscribed(h)
        yield* ingest(h.emu, OTHER)
        expect(yield* h.notifier.wait("400 millis")).toBe("timeout")
        const wait = yield* Effect.forkChild(h.notifier.wait("10 seconds"))
        yield* Effect.sleep("20 millis")
        yield* ingest(h.emu, WATCHED[1])
        expect(yield* Fiber.join(wait)).toBe("notified")
      })
    )
  )

  it.live("noTranslation: every frame of the subscribed flow type wakes (configured event types are ids)", () =>
    harness(
      (h) =>
        Effect.gen(function* () {
          const wait = yield* Effect.forkChild(h.notifier.wait("10 seconds"))
          expect(yield* ingestUntilWoken(h.emu, wait, OTHER)).toBe("notified")
        }),
      {
        connection: { noTranslation: true },
        source: (_emu, resolved) => ({
          ...resolved,
          dataCore: resolved.dataCoreId,
          flowType: resolved.flowTypeId,
          eventTypes: resolved.eventTypeIds
        })
      }
    )
  )

  it.live("the emulator drops the socket mid-wait: the notifier reconnects and later notifications still wake", () =>
    harness(
      (h) =>
        Effect.gen(function* () {
          yield* subscribed(h)
          const wait = yield* Effect.forkChild(h.notifier.wait("10 seconds"))
          yield* Effect.sleep("20 millis")
          h.emu.dropWebSockets()
          yield* eventually("reconnected", () => h.reconnectMetrics() === 1)
          expect(yield* ingestUntilWoken(h.emu, wait)).toBe("notified")
          const status = yield* h.notifier.status
          expect(status.connected).toBe(true)
          expect(status.reconnects).toBeGreaterThanOrEqual(1)
          expect(h.emu.stats.wsConnectionsTotal).toBe(2)
          expect(h.logs.filter((l) => l.level === "Warn").length).toBe(1)
          expect(h.logs.filter((l) => l.level === "Info").length).toBe(1)
        }),
      { options: { reconnect: { baseDelayMs: 50, maxDelayMs: 200 } } }
    )
  )

  it.live("wsHang: waits still end at their timeout; once the hang is off the notifier connects by itself", () =>
    harness(
      (h) =>
        Effect.gen(function* () {
          yield* subscribed(h)
          h.emu.setFaults({ wsHang: true })
          h.emu.dropWebSockets()
          yield* h.statusUntil("a stalled reconnect timed out", (status) =>
            (status.lastError ?? "").includes("did not complete")
          )
          expect(yield* h.notifier.wait("300 millis")).toBe("timeout")
          const down = yield* h.notifier.status
          expect(down.connected).toBe(false)
          expect(down.lastError).toContain("did not complete within 150 ms")
          expect(down.lastError).not.toContain(DEFAULT_API_KEY)
          expect(h.emu.stats.wsConnectionsTotal).toBe(1)

          h.emu.setFaults({ wsHang: false })
          yield* eventually("connected by itself", () => h.emu.stats.wsConnectionsTotal === 2)
          const wait = yield* Effect.forkChild(h.notifier.wait("10 seconds"))
          expect(yield* ingestUntilWoken(h.emu, wait)).toBe("notified")
          expect((yield* h.notifier.status).reconnects).toBe(1)
          expect(h.logs.filter((l) => l.level === "Warn").length).toBe(1)
        }),
      { options: { connectTimeoutMs: 150, reconnect: { baseDelayMs: 50, maxDelayMs: 100 } } }
    )
  )

  it.live("a wrong API key: the upgrade is refused (401), waits time out, the error names no secret", () =>
    harness(
      (h) =>
        Effect.gen(function* () {
          expect(yield* h.notifier.wait("300 millis")).toBe("timeout")
          yield* eventually("refused", () => h.logs.some((l) => l.level === "Warn"))
          const status = yield* h.notifier.status
          expect(status.connected).toBe(false)
          expect(status.lastError).toContain("401")
          expect(status.lastError).not.toContain("wrongsecret")
        }),
      {
        connection: {
          auth: { _tag: "ApiKey", apiKey: Redacted.make("fc_emulator_wrongsecret"), apiKeyId: "emulator" }
        }
      }
    )
  )

  it.live("closing the scope mid-wait, and while a reconnect is stalled, returns within 1 s", () =>
    harness((h) =>
      Effect.gen(function* () {
        yield* subscribed(h)
        const wait = yield* Effect.forkChild(h.notifier.wait("20 seconds"))
        h.emu.setFaults({ wsHang: true })
        h.emu.dropWebSockets()
        yield* eventually("reconnect attempt in flight", () => h.emu.stats.requests >= 2)
        expect(Option.isSome(yield* h.close)).toBe(true)
        yield* Fiber.interrupt(wait)
      })
    )
  )
})
