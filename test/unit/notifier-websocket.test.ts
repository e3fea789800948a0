/**
 * The WebSocket notifier against tiny `ws` peers of our own (not an emulator): they let a test send garbage, refuse
 * or stall upgrades and withhold pongs, which a well-behaved server never does.
 */
import { createServer, type IncomingMessage } from "node:http"
import type { Socket } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Logger, Option, Redacted, References, Scope } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import type { FlowcoreAuth, FlowcoreConnection } from "../../src/domain/config.ts"
import { DataSourceError } from "../../src/domain/errors.ts"
import {
  notificationUrl,
  parseFrame,
  WebSocketNotifier,
  type WebSocketNotifierOptions
} from "../../src/layers/notifier/WebSocket.ts"
import { DataSource, type ResolvedSource } from "../../src/services/DataSource.ts"
import { Notifier } from "../../src/services/Notifier.ts"
import { noopRecorder, PumpMetrics } from "../../src/services/PumpMetrics.ts"
import { engineFetch, eventually, leakChecked, statusUntil } from "../notifier-support.ts"

const SECRET = "fc_keyid_s3cr3t"

const source: ResolvedSource = {
  tenant: "acme",
  dataCore: "dc",
  dataCoreId: "dc-id",
  flowType: "orders.0",
  flowTypeId: "ft-id",
  eventTypes: ["order.created.0", "order.paid.0"],
  eventTypeIds: ["et-1", "et-2"]
}

const eventFrame = (eventType: string) =>
  JSON.stringify({
    message: JSON.stringify({
      pattern: "stored.event.notify.0",
      data: {
        tenantId: "t-id",
        eventId: "e",
        dataCore: "dc-id",
        aggregator: "orders.0",
        eventType,
        validTime: "2024-01-01T00:00:00.000Z"
      }
    })
  })

type UpgradeMode = "accept" | "reject" | "hang"

interface PeerConnection {
  readonly socket: WebSocket
  readonly url: string
  readonly messages: Array<string>
}

/** A WebSocket test peer: records connections and their first messages, and can refuse, stall or drop them. */
const makePeer = (options: { readonly autoPong?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.callback<{
      readonly port: number
      readonly connections: Array<PeerConnection>
      readonly upgrades: { count: number }
      setMode: (mode: UpgradeMode) => void
      send: (frame: string | Buffer, options?: { readonly binary?: boolean }) => void
      dropAll: () => void
      /** Accepted connections not yet closed plus stalled upgrades. */
      openSockets: () => number
      close: () => void
    }>((resume) => {
      const wss = new WebSocketServer({ noServer: true, autoPong: options.autoPong ?? true })
      const server = createServer()
      const connections: Array<PeerConnection> = []
      const stalled = new Set<Socket>()
      const upgrades = { count: 0 }
      let mode: UpgradeMode = "accept"
      server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) => {
        upgrades.count++
        if (mode === "reject") {
          socket.end("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
          return
        }
        if (mode === "hang") {
          stalled.add(socket)
          socket.on("close", () => stalled.delete(socket))
          // The http server allows half-open sockets: a client that gives up only sends FIN.
          socket.on("end", () => socket.destroy())
          return
        }
        wss.handleUpgrade(request, socket, head, (ws) => {
          const connection: PeerConnection = { socket: ws, url: request.url ?? "", messages: [] }
          ws.on("message", (data) => connection.messages.push(String(data)))
          connections.push(connection)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const open = () => connections.filter((c) => c.socket.readyState === c.socket.OPEN)
        resume(
          Effect.succeed({
            port,
            connections,
            upgrades,
            setMode: (next) => {
              mode = next
              if (next !== "hang") for (const socket of stalled) socket.destroy()
            },
            send: (frame, sendOptions) => {
              for (const c of open()) c.socket.send(frame, { binary: sendOptions?.binary ?? false })
            },
            dropAll: () => {
              for (const c of open()) c.socket.terminate()
            },
            openSockets: () => connections.filter((c) => c.socket.readyState !== c.socket.CLOSED).length + stalled.size,
            close: () => {
              for (const c of connections) c.socket.terminate()
              for (const socket of stalled) socket.destroy()
              wss.close()
              server.closeAllConnections()
              server.close()
            }
          })
        )
      })
    }),
    (peer) => Effect.sync(() => peer.close())
  )

interface LogLine {
  readonly level: string
  readonly text: string
}

const apiKeyAuth: FlowcoreAuth = { _tag: "ApiKey", apiKey: Redacted.make(SECRET), apiKeyId: "keyid" }

const connectionTo = (port: number, overrides: Partial<FlowcoreConnection> = {}): FlowcoreConnection => ({
  auth: apiKeyAuth,
  source: { tenant: "acme", dataCore: "dc", flowType: "orders.0", eventTypes: source.eventTypes },
  noTranslation: false,
  directMode: false,
  baseUrlOverride: `http://127.0.0.1:${port}`,
  ...overrides
})

/**
 * Builds the notifier in a scope the test closes itself, so it can check that closing is prompt and leaves no
 * handles behind. Collects logs (Debug and up) and counts reconnect metrics.
 */
const withNotifier = <A, E>(
  peer: { readonly openSockets: () => number },
  options: WebSocketNotifierOptions,
  body: (env: {
    readonly notifier: Notifier["Service"]
    readonly logs: ReadonlyArray<LogLine>
    readonly reconnectMetrics: () => number
    /** Closes the notifier's scope; `None` if that took longer than 1 s. */
    readonly close: Effect.Effect<Option.Option<void>>
  }) => Effect.Effect<A, E>,
  resolve: Effect.Effect<ResolvedSource, DataSourceError> = Effect.succeed(source)
) =>
  Effect.gen(function* () {
    const logs: Array<LogLine> = []
    let reconnectMetrics = 0
    const deps = Layer.mergeAll(
      Layer.succeed(
        DataSource,
        DataSource.of({
          resolve,
          timeBuckets: () => Effect.succeed([]),
          fetchPage: () => Effect.succeed({ events: [] })
        })
      ),
      Layer.succeed(PumpMetrics, { ...noopRecorder, notifierReconnected: () => reconnectMetrics++ }),
      Logger.layer([
        Logger.make(({ logLevel, message }) => {
          logs.push({ level: logLevel, text: (Array.isArray(message) ? message : [message]).map(String).join(" ") })
        })
      ]),
      Layer.succeed(References.MinimumLogLevel, "Debug")
    )
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(WebSocketNotifier.layer(options).pipe(Layer.provide(deps)), scope)
    const result = yield* body({
      notifier: Context.get(context, Notifier),
      logs,
      reconnectMetrics: () => reconnectMetrics,
      close: Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("1 second"))
    }).pipe(Effect.onExit(() => Scope.close(scope, Exit.void)))
    yield* eventually("the notifier closed its sockets when its scope closed", () => peer.openSockets() === 0)
    for (const line of logs) expect(line.text).not.toContain("s3cr3t")
    return result
  })

describe("parseFrame", () => {
  it("decodes text, Buffer, ArrayBuffer and fragmented Buffer[] frames as UTF-8", () => {
    const text = eventFrame("order.créé.0")
    const bytes = Buffer.from(text, "utf8")
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
    const fragments = [bytes.subarray(0, 7), bytes.subarray(7, 40), bytes.subarray(40)]
    for (const frame of [text, bytes, arrayBuffer, fragments]) {
      expect(parseFrame(frame)).toEqual({ _tag: "Event", eventType: "order.créé.0" })
    }
  })

  it("classifies validation frames and never throws on garbage", () => {
    expect(
      parseFrame(JSON.stringify({ type: "validation", summary: "bad subscribe", message: "flowTypeId missing" }))
    ).toEqual({ _tag: "Validation", detail: "bad subscribe: flowTypeId missing" })
    for (const garbage of [
      "not json",
      "{",
      "null",
      "[]",
      JSON.stringify({ message: "not json either" }),
      JSON.stringify({ message: JSON.stringify({ data: {} }) }),
      JSON.stringify({ message: JSON.stringify({ data: { eventType: 7 } }) }),
      JSON.stringify({ type: "other" })
    ]) {
      expect(parseFrame(garbage)._tag).toBe("Malformed")
    }
    expect(parseFrame(Buffer.from([0xff, 0xfe, 0x00]))._tag).toBe("Malformed")
  })
})

describe("notificationUrl", () => {
  const base = connectionTo(1)
  it.effect("derives ws(s) from the data source base URL and puts credentials only in the query", () =>
    Effect.gen(function* () {
      const fallback = yield* notificationUrl({ ...base, baseUrlOverride: undefined })
      expect(fallback.describe).toBe("wss://tenant.api.flowcore.io/notifications")
      expect(new URL(fallback.url).searchParams.get("api_key")).toBe(SECRET)
      expect(new URL(fallback.url).searchParams.get("api_key_id")).toBe("keyid")

      const proxied = yield* notificationUrl({ ...base, baseUrlOverride: "http://user:pw@127.0.0.1:8080/flowcore/" })
      expect(proxied.describe).toBe("ws://127.0.0.1:8080/flowcore/notifications")
      expect(new URL(proxied.url).pathname).toBe("/flowcore/notifications")

      const secure = yield* notificationUrl({ ...base, baseUrlOverride: "https://flowcore.example.com" })
      expect(secure.describe).toBe("wss://flowcore.example.com/notifications")
    })
  )

  it.effect("rejects an override that is not http(s), without echoing credentials", () =>
    Effect.gen(function* () {
      for (const bad of ["ftp://example.com", "not a url"]) {
        const error = yield* Effect.flip(notificationUrl({ ...base, baseUrlOverride: bad }))
        expect(error.message).toContain("baseUrlOverride")
        expect(error.message).not.toContain("s3cr3t")
      }
    })
  )

  it.effect("bearer: a missing token fails the connect attempt with a readable reason", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        notificationUrl({ ...base, auth: { _tag: "Bearer", getToken: Effect.succeed(Option.none()) } })
      )
      expect(error.message).toContain("returned no token")
    })
  )
})

describe("WebSocketNotifier (own ws peers)", () => {
  it.live("one connection with query auth and the subscribe frame; matching frames wake, others do not", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        yield* withNotifier(peer, { connection: connectionTo(peer.port) }, ({ notifier }) =>
          Effect.gen(function* () {
            yield* eventually("subscribed", () => peer.connections[0]?.messages.length === 1)
            const connection = peer.connections[0]
            const url = new URL(connection?.url ?? "", "http://x")
            expect(url.pathname).toBe("/notifications")
            expect(url.searchParams.get("api_key")).toBe(SECRET)
            expect(url.searchParams.get("api_key_id")).toBe("keyid")
            expect(JSON.parse(connection?.messages[0] ?? "")).toEqual({
              tenant: "acme",
              dataCoreId: "dc-id",
              flowTypeId: "ft-id"
            })

            const woken = yield* Effect.forkChild(notifier.wait("10 seconds"))
            yield* Effect.sleep("50 millis")
            peer.send(eventFrame("order.paid.0"))
            expect(yield* Fiber.join(woken)).toBe("notified")
            yield* engineFetch

            peer.send(eventFrame("customer.created.0"))
            expect(yield* notifier.wait("300 millis")).toBe("timeout")

            for (let i = 0; i < 5; i++) {
              const wait = yield* Effect.forkChild(notifier.wait("10 seconds"))
              yield* Effect.sleep("10 millis")
              peer.send(eventFrame("order.created.0"))
              expect(yield* Fiber.join(wait)).toBe("notified")
              yield* engineFetch
            }
            expect(peer.upgrades.count).toBe(1)
            const status = yield* notifier.status
            expect(status).toMatchObject({ notifier: "websocket", connected: true, reconnects: 0 })
            expect(status.lastNotificationAt).toBeTypeOf("number")
            expect(status.lastConnectedAt).toBeTypeOf("number")
          })
        )
      })
    )
  )

  it.live("a notification that arrives while nobody waits (during a fetch) is latched, not lost", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        yield* withNotifier(peer, { connection: connectionTo(peer.port) }, ({ notifier }) =>
          Effect.gen(function* () {
            yield* eventually("subscribed", () => peer.connections[0]?.messages.length === 1)
            peer.send(eventFrame("order.created.0"))
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

  it.live("malformed and validation frames are ignored (validation logged at Warning), the socket survives", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        yield* withNotifier(peer, { connection: connectionTo(peer.port) }, ({ notifier, logs }) =>
          Effect.gen(function* () {
            yield* eventually("subscribed", () => peer.connections[0]?.messages.length === 1)
            peer.send("garbage{")
            peer.send(Buffer.from([0xde, 0xad, 0xbe, 0xef]), { binary: true })
            peer.send(JSON.stringify({ message: "{not json" }))
            peer.send(JSON.stringify({ message: JSON.stringify({ data: { eventType: 42 } }) }))
            peer.send(JSON.stringify({ type: "validation", summary: "Invalid subscription", message: "bad tenant" }))
            expect(yield* notifier.wait("300 millis")).toBe("timeout")
            yield* eventually("validation warning logged", () =>
              logs.some((l) => l.level === "Warn" && l.text.includes("Invalid subscription"))
            )
            expect(logs.filter((l) => l.level === "Debug" && l.text.includes("malformed")).length).toBe(4)

            const wait = yield* Effect.forkChild(notifier.wait("10 seconds"))
            yield* Effect.sleep("20 millis")
            peer.send(Buffer.from(eventFrame("order.created.0")), { binary: true })
            expect(yield* Fiber.join(wait)).toBe("notified")
            expect(peer.upgrades.count).toBe(1)
            expect((yield* notifier.status).connected).toBe(true)
          })
        )
      })
    )
  )

  it.live("noTranslation: any event frame of the subscribed flow type wakes", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        const ids: ResolvedSource = { ...source, flowType: "ft-id", eventTypes: ["et-1"], dataCore: "dc-id" }
        yield* withNotifier(
          peer,
          { connection: connectionTo(peer.port, { noTranslation: true }) },
          ({ notifier }) =>
            Effect.gen(function* () {
              yield* eventually("subscribed", () => peer.connections[0]?.messages.length === 1)
              const wait = yield* Effect.forkChild(notifier.wait("10 seconds"))
              yield* Effect.sleep("20 millis")
              peer.send(eventFrame("order.created.0"))
              expect(yield* Fiber.join(wait)).toBe("notified")
            }),
          Effect.succeed(ids)
        )
      })
    )
  )

  it.live("no pong within pongTimeoutMs terminates the half-open socket and reconnects", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer({ autoPong: false })
        yield* withNotifier(
          peer,
          {
            connection: connectionTo(peer.port),
            pingIntervalMs: 100,
            pongTimeoutMs: 150,
            reconnect: { baseDelayMs: 20, maxDelayMs: 50 }
          },
          ({ notifier, logs }) =>
            Effect.gen(function* () {
              yield* eventually("reconnected after a missing pong", () => peer.upgrades.count >= 3)
              expect(peer.connections[0]?.socket.readyState).toBe(peer.connections[0]?.socket.CLOSED)
              const status = yield* notifier.status
              expect(status.lastError).toContain("no pong within 150 ms")
              expect(status.reconnects).toBeGreaterThanOrEqual(1)
              expect(logs.some((l) => l.level === "Warn" && l.text.includes("no pong within 150 ms"))).toBe(true)
            })
        )
      })
    )
  )

  it.live("a peer that answers pings keeps one connection", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        yield* withNotifier(peer, { connection: connectionTo(peer.port), pingIntervalMs: 50, pongTimeoutMs: 100 }, () =>
          Effect.gen(function* () {
            yield* eventually("subscribed", () => peer.connections[0]?.messages.length === 1)
            yield* Effect.sleep("500 millis")
            expect(peer.upgrades.count).toBe(1)
          })
        )
      })
    )
  )

  it.live("refused connects: waits run to their timeout, one Warning, recovery at Info, reconnect counted later", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        peer.setMode("reject")
        yield* withNotifier(
          peer,
          { connection: connectionTo(peer.port), reconnect: { baseDelayMs: 20, maxDelayMs: 40 } },
          ({ notifier, logs, reconnectMetrics }) =>
            Effect.gen(function* () {
              yield* eventually("several refused attempts", () => peer.upgrades.count >= 4)
              expect(yield* notifier.wait("200 millis")).toBe("timeout")
              const down = yield* notifier.status
              expect(down.connected).toBe(false)
              expect(down.lastError).toContain("401")
              expect(down.lastError).not.toContain("s3cr3t")
              expect(logs.filter((l) => l.level === "Warn").length).toBe(1)

              peer.setMode("accept")
              yield* eventually("connected after the refusals", () => peer.connections.length === 1)
              yield* eventually("status connected", () => logs.some((l) => l.level === "Info"))
              const up = yield* notifier.status
              expect(up.connected).toBe(true)
              expect(up.reconnects).toBe(0)
              expect(reconnectMetrics()).toBe(0)

              peer.dropAll()
              yield* eventually("reconnected after the drop", () => peer.connections.length === 2)
              yield* eventually("reconnect counted", () => reconnectMetrics() === 1)
              expect((yield* notifier.status).reconnects).toBe(1)
              const wait = yield* Effect.forkChild(notifier.wait("10 seconds"))
              yield* eventually("subscribed again", () => peer.connections[1]?.messages.length === 1)
              peer.send(eventFrame("order.paid.0"))
              expect(yield* Fiber.join(wait)).toBe("notified")
              expect(logs.filter((l) => l.level === "Warn").length).toBe(2)
              expect(logs.filter((l) => l.level === "Info").length).toBe(2)
            })
        )
      })
    )
  )

  it.live("an upgrade that never completes is bounded by connectTimeoutMs and never blocks a wait", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        peer.setMode("hang")
        yield* withNotifier(
          peer,
          {
            connection: connectionTo(peer.port),
            connectTimeoutMs: 150,
            reconnect: { baseDelayMs: 20, maxDelayMs: 40 }
          },
          ({ notifier }) =>
            Effect.gen(function* () {
              expect(yield* notifier.wait("300 millis")).toBe("timeout")
              yield* eventually("a second attempt after the first timed out", () => peer.upgrades.count >= 2)
              const status = yield* notifier.status
              expect(status.connected).toBe(false)
              expect(status.lastError).toContain("did not complete within 150 ms")
              expect(status.lastError).toContain(`ws://127.0.0.1:${peer.port}/notifications`)
              expect(status.lastError).not.toContain("s3cr3t")
              peer.setMode("accept")
              yield* eventually("connects by itself once upgrades complete", () => peer.connections.length === 1)
            })
        )
      })
    )
  )

  it.live("bearer auth: the token effect runs per connect and travels as token=", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        let calls = 0
        const auth: FlowcoreAuth = {
          _tag: "Bearer",
          getToken: Effect.sync(() => Option.some(Redacted.make(`token-${++calls}`)))
        }
        yield* withNotifier(
          peer,
          { connection: connectionTo(peer.port, { auth }), reconnect: { baseDelayMs: 20, maxDelayMs: 40 } },
          () =>
            Effect.gen(function* () {
              yield* eventually("connected", () => peer.connections.length === 1)
              peer.dropAll()
              yield* eventually("reconnected", () => peer.connections.length === 2)
              const tokens = peer.connections.map((c) => new URL(c.url, "http://x").searchParams.get("token"))
              expect(tokens).toEqual(["token-1", "token-2"])
              expect(new URL(peer.connections[0]?.url ?? "", "http://x").searchParams.has("api_key")).toBe(false)
            })
        )
      })
    )
  )

  it.live("a failing resolve does not fail the layer; the loop retries until it succeeds", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        let attempts = 0
        const flaky = Effect.suspend(() =>
          ++attempts < 3
            ? Effect.fail(
                new DataSourceError({
                  command: "DataCoreFetch",
                  kind: "Transport",
                  retryable: true,
                  message: "connection refused"
                })
              )
            : Effect.succeed(source)
        )
        yield* withNotifier(
          peer,
          { connection: connectionTo(peer.port), reconnect: { baseDelayMs: 20, maxDelayMs: 40 } },
          ({ notifier }) =>
            Effect.gen(function* () {
              expect((yield* notifier.status).connected).toBe(false)
              yield* eventually("connected after resolve recovered", () => peer.connections.length === 1)
              expect(attempts).toBe(3)
            }),
          flaky
        )
      })
    )
  )

  it.live("closing the scope mid-wait and mid-connect returns within 1 s", () =>
    leakChecked(
      Effect.gen(function* () {
        const peer = yield* makePeer()
        yield* withNotifier(peer, { connection: connectionTo(peer.port) }, ({ notifier, close }) =>
          Effect.gen(function* () {
            yield* eventually("connected", () => peer.connections.length === 1)
            const wait = yield* Effect.forkChild(notifier.wait("20 seconds"))
            yield* Effect.sleep("20 millis")
            peer.setMode("hang")
            peer.dropAll()
            yield* eventually("reconnect attempt stalled", () => peer.upgrades.count === 2)
            expect(Option.isSome(yield* close)).toBe(true)
            yield* eventually("the stalled connect was abandoned", () => peer.openSockets() === 0)
            yield* Fiber.interrupt(wait)
          })
        )
      })
    )
  )
})
