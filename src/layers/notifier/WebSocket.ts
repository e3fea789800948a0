/**
 * The default live notifier: one long-lived connection to Flowcore's `/notifications` WebSocket for the life of the
 * layer scope. Built on the `ws` package directly because half-open sockets are only detectable with protocol-level
 * ping/pong and `terminate()`, which the WHATWG WebSocket (and so effect/socket) does not expose.
 */
import { Deferred, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { WebSocket } from "ws"
import type { FlowcoreConnection } from "../../domain/config.ts"
import { NotifierError } from "../../domain/errors.ts"
import { DataSource, type ResolvedSource } from "../../services/DataSource.ts"
import { Notifier } from "../../services/Notifier.ts"
import { PumpMetrics } from "../../services/PumpMetrics.ts"
import {
  type ConnectionMonitor,
  makeConnectionMonitor,
  reconnectBackoff,
  runConnectionLoop
} from "./ConnectionMonitor.ts"

export interface WebSocketNotifierOptions {
  readonly connection: FlowcoreConnection
  /** Bound on TCP connect + upgrade; default 10_000. */
  readonly connectTimeoutMs?: number
  /** Protocol-level ping interval; default 15_000. */
  readonly pingIntervalMs?: number
  /** No pong within this time -> terminate and reconnect; default 10_000. */
  readonly pongTimeoutMs?: number
  /** Reconnect backoff; default 500 / 30_000. */
  readonly reconnect?: { readonly baseDelayMs?: number; readonly maxDelayMs?: number }
}

const NOTIFIER = "websocket"
const DEFAULT_BASE_URL = "https://tenant.api.flowcore.io"

const fail = (message: string, cause?: unknown) =>
  new NotifierError(cause === undefined ? { notifier: NOTIFIER, message } : { notifier: NOTIFIER, message, cause })

/** Frames sent by Flowcore: a validation error for a bad subscribe message, or an event whose detail is a JSON string. */
const ValidationFrame = Schema.Struct({
  type: Schema.Literal("validation"),
  summary: Schema.optional(Schema.Unknown),
  message: Schema.optional(Schema.Unknown)
})
const EventFrame = Schema.Struct({
  message: Schema.fromJsonString(Schema.Struct({ data: Schema.Struct({ eventType: Schema.String }) }))
})
const decodeFrame = Schema.decodeUnknownResult(Schema.fromJsonString(Schema.Union([ValidationFrame, EventFrame])))

export type NotificationFrame =
  | { readonly _tag: "Event"; readonly eventType: string }
  | { readonly _tag: "Validation"; readonly detail: string }
  | { readonly _tag: "Malformed"; readonly reason: string }

/** Decodes one incoming frame (text, Buffer, ArrayBuffer or fragmented Buffer[]; always UTF-8). Never throws. */
export const parseFrame = (data: string | Buffer | ArrayBuffer | ReadonlyArray<Buffer>): NotificationFrame => {
  const text =
    typeof data === "string"
      ? data
      : Buffer.isBuffer(data)
        ? data.toString("utf8")
        : data instanceof ArrayBuffer
          ? Buffer.from(data).toString("utf8")
          : Buffer.concat(data).toString("utf8")
  const decoded = decodeFrame(text)
  if (decoded._tag === "Failure") return { _tag: "Malformed", reason: decoded.failure.message }
  const frame = decoded.success
  if ("type" in frame) {
    const detail = [frame.summary, frame.message]
      .filter((part) => part !== undefined)
      .map((part) => (typeof part === "string" ? part : JSON.stringify(part)))
    return { _tag: "Validation", detail: detail.join(": ") }
  }
  return { _tag: "Event", eventType: frame.message.data.eventType }
}

/**
 * The notification socket URL: same origin as the data source (override or the public tenant host), ws(s) scheme,
 * credentials in the query as Flowcore expects. The result holds secrets: only `describe` may be logged.
 */
export const notificationUrl = Effect.fnUntraced(function* (connection: FlowcoreConnection) {
  const base = connection.baseUrlOverride ?? DEFAULT_BASE_URL
  const parsed = URL.canParse(base) ? new URL(base) : undefined
  const scheme = parsed?.protocol === "https:" ? "wss:" : parsed?.protocol === "http:" ? "ws:" : undefined
  if (parsed === undefined || scheme === undefined) {
    return yield* fail(`baseUrlOverride ${JSON.stringify(base)} is not an http:// or https:// URL`)
  }
  const url = new URL(`${parsed.pathname.replace(/\/+$/, "")}/notifications`, parsed)
  url.protocol = scheme
  url.username = ""
  url.password = ""
  const describe = url.href
  const auth = connection.auth
  if (auth._tag === "ApiKey") {
    url.searchParams.set("api_key", Redacted.value(auth.apiKey))
    url.searchParams.set("api_key_id", auth.apiKeyId)
  } else {
    const token = yield* auth.getToken.pipe(
      Effect.mapError(() => fail("the bearer token function failed")),
      Effect.flatMap(
        Option.match({
          onNone: () => Effect.fail(fail("the bearer token function returned no token")),
          onSome: Effect.succeed
        })
      )
    )
    url.searchParams.set("token", Redacted.value(token))
  }
  return { url: url.href, describe }
})

interface Settings {
  readonly connectTimeout: Duration.Duration
  readonly pingInterval: Duration.Duration
  readonly pongTimeout: Duration.Duration
}

interface OpenSocket {
  readonly socket: WebSocket
  readonly opened: Deferred.Deferred<void>
  /** Completes with a readable reason when the socket closes. */
  readonly closed: Deferred.Deferred<string>
  /** Replaced before every ping; completed by the next pong. */
  pong: Deferred.Deferred<void> | undefined
}

const openSocket = (
  target: { readonly url: string; readonly describe: string },
  onMessage: (data: WebSocket.RawData) => void
) =>
  Effect.acquireRelease(
    Effect.try({
      try: (): OpenSocket => {
        const socket = new WebSocket(target.url, { perMessageDeflate: false })
        const state: OpenSocket = {
          socket,
          opened: Deferred.makeUnsafe<void>(),
          closed: Deferred.makeUnsafe<string>(),
          pong: undefined
        }
        let lastSocketError: string | undefined
        socket.on("open", () => Deferred.doneUnsafe(state.opened, Effect.void))
        socket.on("message", onMessage)
        socket.on("pong", () => {
          if (state.pong !== undefined) Deferred.doneUnsafe(state.pong, Effect.void)
        })
        socket.on("error", (error) => {
          lastSocketError = error.message
        })
        socket.on("close", (code, reason) => {
          const text = reason.toString("utf8")
          Deferred.doneUnsafe(
            state.closed,
            Effect.succeed(lastSocketError ?? `socket closed with code ${code}${text === "" ? "" : ` (${text})`}`)
          )
        })
        return state
      },
      // ws echoes the whole URL, credentials included, in its errors: only the safe description is kept.
      catch: () => fail(`cannot open a WebSocket to ${target.describe}`)
    }),
    ({ socket }) =>
      Effect.sync(() => {
        socket.removeAllListeners()
        // terminate() on a socket still connecting emits an error event; without a listener it would be thrown.
        socket.on("error", () => {})
        socket.terminate()
      })
  )

/** Pings forever; fails (after terminating the socket) as soon as one ping goes unanswered for `pongTimeout`. */
const heartbeat = (state: OpenSocket, settings: Settings, proven: () => void) =>
  Effect.gen(function* () {
    yield* Effect.sleep(settings.pingInterval)
    const pong = Deferred.makeUnsafe<void>()
    state.pong = pong
    state.socket.ping()
    const answered = yield* Deferred.await(pong).pipe(Effect.timeoutOption(settings.pongTimeout))
    if (Option.isNone(answered)) {
      state.socket.terminate()
      return yield* fail(`no pong within ${Duration.toMillis(settings.pongTimeout)} ms; the connection was half-open`)
    }
    proven()
  }).pipe(Effect.forever)

const make = Effect.fnUntraced(function* (options: WebSocketNotifierOptions) {
  const dataSource = yield* DataSource
  const metrics = yield* PumpMetrics
  const services = yield* Effect.context<never>()
  const monitor: ConnectionMonitor = makeConnectionMonitor(NOTIFIER, metrics)
  const logFromCallback = (log: Effect.Effect<void>) =>
    Effect.runSyncWith(services)(log.pipe(Effect.annotateLogs({ notifier: NOTIFIER })))
  const settings: Settings = {
    connectTimeout: Duration.millis(options.connectTimeoutMs ?? 10_000),
    pingInterval: Duration.millis(options.pingIntervalMs ?? 15_000),
    pongTimeout: Duration.millis(options.pongTimeoutMs ?? 10_000)
  }
  const backoff = reconnectBackoff(options.reconnect?.baseDelayMs ?? 500, options.reconnect?.maxDelayMs ?? 30_000)
  let connectAttempts = 0

  const onMessage = (source: ResolvedSource) => {
    const wanted = new Set(source.eventTypes)
    return (data: WebSocket.RawData) => {
      const frame = parseFrame(data)
      switch (frame._tag) {
        case "Event":
          // With noTranslation the configured event types are ids while frames carry names, so every frame of
          // the subscribed flow type has to count.
          if (options.connection.noTranslation || wanted.has(frame.eventType)) monitor.notifyUnsafe()
          return
        case "Validation":
          return logFromCallback(Effect.logWarning(`Flowcore rejected the notification subscription: ${frame.detail}`))
        case "Malformed":
          return logFromCallback(Effect.logDebug(`ignored a malformed notification frame: ${frame.reason}`))
      }
    }
  }

  /** One connect attempt, from resolving the flow type to the subscribe message, in its own span. */
  const connect = Effect.suspend(() =>
    Effect.withSpan(
      Effect.gen(function* () {
        // The data source caches a successful resolve, so a reconnect does not look the ids up again.
        const source = yield* dataSource.resolve.pipe(
          Effect.mapError((error) => fail(`resolving the flow type failed: ${error.message}`, error))
        )
        const target = yield* notificationUrl(options.connection)
        // `describe` is the URL without the credentials in its query.
        yield* Effect.annotateCurrentSpan("url.full", target.describe)
        const state = yield* openSocket(target, onMessage(source))
        yield* Effect.raceFirst(
          Deferred.await(state.opened),
          Effect.flatMap(Deferred.await(state.closed), (reason) => Effect.fail(fail(`connect failed: ${reason}`)))
        ).pipe(
          Effect.timeoutOrElse({
            duration: settings.connectTimeout,
            orElse: () =>
              Effect.fail(
                fail(
                  `connecting to ${target.describe} did not complete within ${Duration.toMillis(settings.connectTimeout)} ms`
                )
              )
          })
        )
        state.socket.send(
          JSON.stringify({ tenant: source.tenant, dataCoreId: source.dataCoreId, flowTypeId: source.flowTypeId })
        )
        return state
      }),
      "WebSocketNotifier.connect",
      {
        attributes: { "flowcore.notifier": NOTIFIER, "flowcore.connect_attempt": ++connectAttempts },
        captureStackTrace: false
      }
    )
  )

  /**
   * One connection from connect to close. Succeeds (with the close reason) only when the connection proved itself
   * with at least one pong, so the caller resets its backoff; every other ending is a failure and backs off further.
   */
  const session = Effect.scoped(
    Effect.gen(function* () {
      const state = yield* connect
      yield* monitor.connected
      let stable = false
      const reason = yield* Effect.raceFirst(
        heartbeat(state, settings, () => {
          stable = true
        }),
        Deferred.await(state.closed)
      )
      return stable ? reason : yield* fail(reason)
    })
  )

  yield* runConnectionLoop(session, monitor, backoff, fail).pipe(Effect.forkScoped)

  return Notifier.of({ name: NOTIFIER, wait: monitor.wait, status: monitor.status })
})

export const WebSocketNotifier: {
  readonly layer: (options: WebSocketNotifierOptions) => Layer.Layer<Notifier, never, DataSource | PumpMetrics>
} = {
  layer: (options) => Layer.effect(Notifier, make(options))
}
