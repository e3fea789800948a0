/**
 * The NATS notifier against the real server on 127.0.0.1:4222. A small TCP proxy sits between the notifier and the
 * server so a test can cut the connection server-side. These tests fail (never skip) when NATS is not running.
 */
import { randomUUID } from "node:crypto"
import { createConnection, createServer, type Socket } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { Context, Effect, Exit, Fiber, Layer, Logger, Option, Scope } from "effect"
import { NatsNotifier, notificationSubject } from "../../src/layers/notifier/Nats.ts"
import { DataSource, type ResolvedSource } from "../../src/services/DataSource.ts"
import { Notifier } from "../../src/services/Notifier.ts"
import { noopRecorder, PumpMetrics } from "../../src/services/PumpMetrics.ts"
import { engineFetch, eventually, leakChecked, statusUntil } from "../notifier-support.ts"

const NATS_HOST = "127.0.0.1"
const NATS_PORT = 4222

/** Names with dots, as Flowcore allows; a fresh data core id per test keeps subjects apart. */
const makeSource = (): ResolvedSource => ({
  tenant: "acme",
  dataCore: "dc",
  dataCoreId: randomUUID(),
  flowType: "orders.0",
  flowTypeId: randomUUID(),
  eventTypes: ["order.created.0", "order.paid.0"],
  eventTypeIds: [randomUUID(), randomUUID()]
})

type ProxyMode = "forward" | "refuse"

/** A TCP proxy to the NATS server that can cut every proxied connection or refuse new ones. */
const makeProxy = Effect.acquireRelease(
  Effect.callback<{
    readonly port: number
    readonly accepted: { count: number }
    setMode: (mode: ProxyMode) => void
    dropAll: () => void
    openSockets: () => number
    close: () => void
  }>((resume) => {
    const sockets = new Set<Socket>()
    const accepted = { count: 0 }
    let mode: ProxyMode = "forward"
    const track = (socket: Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
    }
    const server = createServer((client) => {
      accepted.count++
      track(client)
      if (mode === "refuse") {
        client.destroy()
        return
      }
      const upstream = createConnection({ host: NATS_HOST, port: NATS_PORT })
      track(upstream)
      client.pipe(upstream)
      upstream.pipe(client)
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => client.destroy())
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(
        Effect.succeed({
          port: typeof address === "object" && address !== null ? address.port : 0,
          accepted,
          setMode: (next) => {
            mode = next
          },
          dropAll: () => {
            for (const socket of sockets) socket.destroy()
          },
          openSockets: () => sockets.size,
          close: () => {
            for (const socket of sockets) socket.destroy()
            server.close()
          }
        })
      )
    })
  }),
  (proxy) => Effect.sync(() => proxy.close())
)

/** A direct client for publishing, independent of the notifier under test. */
const publisher = Effect.acquireRelease(
  Effect.tryPromise(() => connect({ servers: `${NATS_HOST}:${NATS_PORT}`, timeout: 2_000 })),
  (connection) => Effect.promise(() => connection.close())
)

const publish = (connection: NatsConnection, subject: string) =>
  Effect.tryPromise(() => {
    connection.publish(subject, "{}")
    return connection.flush()
  })

interface LogLine {
  readonly level: string
  readonly text: string
}

const withNotifier = <A, E>(
  proxy: { readonly port: number; readonly openSockets: () => number },
  source: ResolvedSource,
  body: (env: {
    readonly notifier: Notifier["Service"]
    readonly logs: ReadonlyArray<LogLine>
    readonly reconnectMetrics: () => number
    readonly close: Effect.Effect<Option.Option<void>>
  }) => Effect.Effect<A, E>
) =>
  Effect.gen(function* () {
    const logs: Array<LogLine> = []
    let reconnectMetrics = 0
    const deps = Layer.mergeAll(
      Layer.succeed(
        DataSource,
        DataSource.of({
          resolve: Effect.succeed(source),
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
      NatsNotifier.layer({ servers: [`127.0.0.1:${proxy.port}`], connectTimeoutMs: 2_000 }).pipe(Layer.provide(deps)),
      scope
    )
    const close = Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("1 second"))
    const result = yield* body({
      notifier: Context.get(context, Notifier),
      logs,
      reconnectMetrics: () => reconnectMetrics,
      close
    }).pipe(Effect.onExit(() => Scope.close(scope, Exit.void)))
    yield* eventually("the notifier closed its connection when its scope closed", () => proxy.openSockets() === 0)
    return result
  })

const connected = (notifier: Notifier["Service"]) =>
  statusUntil(notifier, "the NATS notifier connected", (status) => status.connected)

describe("NatsNotifier (real NATS on 127.0.0.1:4222)", () => {
  it.live("NATS is running on 127.0.0.1:4222 (these tests fail rather than skip without it)", () =>
    Effect.callback<void, Error>((resume) => {
      const socket = createConnection({ host: NATS_HOST, port: NATS_PORT })
      socket.setTimeout(2_000, () => socket.destroy(new Error("timed out")))
      socket.once("data", () => {
        socket.destroy()
        resume(Effect.void)
      })
      socket.once("error", (error) => resume(Effect.fail(new Error(`NATS not reachable at 127.0.0.1:4222: ${error}`))))
    })
  )

  it.live("a publish on an event type's subject wakes a wait; other subjects do not; one connection", () =>
    leakChecked(
      Effect.gen(function* () {
        const proxy = yield* makeProxy
        const pub = yield* publisher
        const source = makeSource()
        yield* withNotifier(proxy, source, ({ notifier }) =>
          Effect.gen(function* () {
            yield* connected(notifier)
            for (const eventType of source.eventTypes) {
              const wait = yield* Effect.forkChild(notifier.wait("10 seconds"))
              yield* Effect.sleep("20 millis")
              yield* publish(pub, notificationSubject(source, eventType))
              expect(yield* Fiber.join(wait)).toBe("notified")
              yield* engineFetch
            }
            yield* publish(pub, notificationSubject(source, "order.cancelled.0"))
            yield* publish(pub, `stored.event.notify.0.${source.dataCoreId}.orders.order.created.0`)
            expect(yield* notifier.wait("300 millis")).toBe("timeout")
            expect(proxy.accepted.count).toBe(1)
            const status = yield* notifier.status
            expect(status).toMatchObject({ notifier: "nats", connected: true, reconnects: 0 })
            expect(status.lastNotificationAt).toBeTypeOf("number")
          })
        )
      })
    )
  )

  it.live("a notification that arrives while nobody waits (during a fetch) is latched, not lost", () =>
    leakChecked(
      Effect.gen(function* () {
        const proxy = yield* makeProxy
        const pub = yield* publisher
        const source = makeSource()
        yield* withNotifier(proxy, source, ({ notifier }) =>
          Effect.gen(function* () {
            yield* connected(notifier)
            yield* publish(pub, notificationSubject(source, "order.paid.0"))
            yield* statusUntil(
              notifier,
              "the notification arrived",
              (status) => status.lastNotificationAt !== undefined
            )
            expect(yield* notifier.wait("5 seconds")).toBe("notified")
            expect(yield* notifier.wait("200 millis")).toBe("timeout")
          })
        )
      })
    )
  )

  it.live("server-side disconnect: the client reconnects, counts it, and later publishes still wake", () =>
    leakChecked(
      Effect.gen(function* () {
        const proxy = yield* makeProxy
        const pub = yield* publisher
        const source = makeSource()
        yield* withNotifier(proxy, source, ({ notifier, logs, reconnectMetrics }) =>
          Effect.gen(function* () {
            yield* connected(notifier)
            proxy.dropAll()
            yield* eventually("reconnected", () => reconnectMetrics() === 1)
            const status = yield* notifier.status
            expect(status.connected).toBe(true)
            expect(status.reconnects).toBe(1)
            expect(status.lastError).toContain("disconnected")
            expect(proxy.accepted.count).toBe(2)
            expect(logs.filter((l) => l.level === "Warn").length).toBe(1)
            expect(logs.filter((l) => l.level === "Info").length).toBe(1)

            // The server may see our re-subscription a moment after the reconnect event: keep publishing.
            const wait = yield* Effect.forkChild(notifier.wait("10 seconds"))
            yield* publish(pub, notificationSubject(source, "order.created.0")).pipe(
              Effect.andThen(Effect.sleep("50 millis")),
              Effect.repeat({ until: () => wait.pollUnsafe() !== undefined, times: 100 })
            )
            expect(yield* Fiber.join(wait)).toBe("notified")
          })
        )
      })
    )
  )

  it.live("an unreachable server: waits run to their timeout, the layer does not fail, it connects later", () =>
    leakChecked(
      Effect.gen(function* () {
        const proxy = yield* makeProxy
        proxy.setMode("refuse")
        const source = makeSource()
        yield* withNotifier(proxy, source, ({ notifier, logs }) =>
          Effect.gen(function* () {
            expect(yield* notifier.wait("200 millis")).toBe("timeout")
            yield* eventually("a refused connect was recorded", () => logs.some((l) => l.level === "Warn"))
            const down = yield* notifier.status
            expect(down.connected).toBe(false)
            expect(down.lastError).toContain("connect to")
            proxy.setMode("forward")
            yield* connected(notifier)
            expect(logs.filter((l) => l.level === "Warn").length).toBe(1)
            expect(logs.some((l) => l.level === "Info" && l.text.includes("connected again"))).toBe(true)
            expect((yield* notifier.status).reconnects).toBe(0)
          })
        )
      })
    )
  )

  it.live("closing the scope mid-wait returns within 1 s, also while the client is reconnecting", () =>
    leakChecked(
      Effect.gen(function* () {
        const proxy = yield* makeProxy
        const source = makeSource()
        yield* withNotifier(proxy, source, ({ notifier, close }) =>
          Effect.gen(function* () {
            yield* connected(notifier)
            const wait = yield* Effect.forkChild(notifier.wait("20 seconds"))
            proxy.setMode("refuse")
            proxy.dropAll()
            yield* statusUntil(notifier, "the notifier saw the connection drop", (status) => !status.connected)
            expect(Option.isSome(yield* close)).toBe(true)
            yield* Fiber.interrupt(wait)
            expect(Exit.hasInterrupts(yield* Fiber.await(wait))).toBe(true)
          })
        )
      })
    )
  )

  it.live("closing the scope of a connected notifier returns within 1 s and closes the connection", () =>
    leakChecked(
      Effect.gen(function* () {
        const proxy = yield* makeProxy
        const source = makeSource()
        yield* withNotifier(proxy, source, ({ notifier, close }) =>
          Effect.gen(function* () {
            yield* connected(notifier)
            const wait = yield* Effect.forkChild(notifier.wait("20 seconds"))
            yield* Effect.sleep("20 millis")
            expect(Option.isSome(yield* close)).toBe(true)
            yield* eventually("connection closed", () => proxy.openSockets() === 0)
            yield* Fiber.interrupt(wait)
          })
        )
      })
    )
  )
})
