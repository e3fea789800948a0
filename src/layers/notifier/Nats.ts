/**
 * Live notifier over NATS: one connection for the life of the layer scope with one subscription per configured event
 * type. Once connected, the client's own reconnect logic (unlimited attempts, subscriptions restored) keeps it alive;
 * our Schedule only covers the first connect and a client that closed for good.
 */
import { connect, type NatsConnection, type Status } from "@nats-io/transport-node"
import { Duration, Effect, Layer, Stream } from "effect"
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

export interface NatsNotifierOptions {
  readonly servers: string | ReadonlyArray<string>
  /** Bound on one connect attempt; default 10_000. */
  readonly connectTimeoutMs?: number
}

const NOTIFIER = "nats"
const RECONNECT_TIME_WAIT_MS = 1_000
const PING_INTERVAL_MS = 15_000
/** drain + close together stay under the 1 s the pump allows a notifier to shut down. */
const DRAIN_TIMEOUT = Duration.millis(400)
const CLOSE_TIMEOUT = Duration.millis(400)

const fail = (message: string, cause?: unknown) =>
  new NotifierError(cause === undefined ? { notifier: NOTIFIER, message } : { notifier: NOTIFIER, message, cause })

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** Server URLs may carry credentials (`nats://user:pass@host`); they never go into a message. */
const withoutUserInfo = (server: string) => server.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i, "$1")

/** Flowcore publishes every stored event on this subject; names may contain dots, so the subject is used verbatim. */
export const notificationSubject = (source: ResolvedSource, eventType: string) =>
  `stored.event.notify.0.${source.dataCoreId}.${source.flowType}.${eventType}`

/** A connect that is interrupted while in flight closes the connection it eventually gets. */
const openConnection = (servers: ReadonlyArray<string>, timeoutMs: number) =>
  Effect.acquireRelease(
    Effect.callback<NatsConnection, NotifierError>((resume) => {
      let abandoned = false
      connect({
        servers: [...servers],
        name: "flowcore-data-pump",
        timeout: timeoutMs,
        maxReconnectAttempts: -1,
        reconnectTimeWait: RECONNECT_TIME_WAIT_MS,
        // The client's default (2 min x 2 missed pings) would leave a half-open connection unnoticed for minutes.
        pingInterval: PING_INTERVAL_MS,
        maxPingOut: 2
      }).then(
        (connection) => {
          if (abandoned) void connection.close()
          else resume(Effect.succeed(connection))
        },
        (error: unknown) =>
          resume(Effect.fail(fail(`connect to ${servers.map(withoutUserInfo).join(", ")} failed: ${errorText(error)}`)))
      )
      return Effect.sync(() => {
        abandoned = true
      })
    }),
    (connection) =>
      Effect.tryPromise(() => connection.drain()).pipe(
        Effect.timeoutOption(DRAIN_TIMEOUT),
        Effect.ignore,
        Effect.andThen(Effect.tryPromise(() => connection.close()).pipe(Effect.timeoutOption(CLOSE_TIMEOUT))),
        Effect.ignore
      )
  )

const followStatus = (connection: NatsConnection, monitor: ConnectionMonitor) =>
  Stream.fromAsyncIterable(connection.status(), (error) => fail(`status stream failed: ${errorText(error)}`)).pipe(
    Stream.runForEach((status: Status) => {
      switch (status.type) {
        case "disconnect":
          return monitor.disconnected(`disconnected from ${status.server}`)
        case "reconnect":
          return monitor.connected
        case "error":
          return Effect.sync(() => monitor.recordError(status.error.message))
        default:
          return Effect.void
      }
    }),
    Effect.catch((error) => Effect.sync(() => monitor.recordError(error.message)))
  )

const make = Effect.fnUntraced(function* (options: NatsNotifierOptions) {
  const dataSource = yield* DataSource
  const metrics = yield* PumpMetrics
  const monitor = makeConnectionMonitor(NOTIFIER, metrics)
  const servers = typeof options.servers === "string" ? [options.servers] : options.servers
  const backoff = reconnectBackoff(500, 30_000)
  let connectAttempts = 0

  /** One connect attempt, from resolving the flow type to the flushed subscriptions, in its own span. */
  const connect = Effect.suspend(() =>
    Effect.withSpan(
      Effect.gen(function* () {
        // The data source caches a successful resolve, so a reconnect does not look the ids up again.
        const source = yield* dataSource.resolve.pipe(
          Effect.mapError((error) => fail(`resolving the flow type failed: ${error.message}`, error))
        )
        const connection = yield* openConnection(servers, options.connectTimeoutMs ?? 10_000)
        // Taken before subscribing: the client buffers status events for the iterator, so none is missed.
        const statusEvents = followStatus(connection, monitor)
        for (const eventType of source.eventTypes) {
          const subject = notificationSubject(source, eventType)
          yield* Effect.try({
            try: () =>
              connection.subscribe(subject, {
                callback: (error) => {
                  if (error === null) monitor.notifyUnsafe()
                  else monitor.recordError(error.message)
                }
              }),
            catch: (error) => fail(`cannot subscribe to ${JSON.stringify(subject)}: ${errorText(error)}`)
          })
        }
        yield* Effect.tryPromise(() => connection.flush()).pipe(
          Effect.mapError((error) => fail(`subscribing failed: ${errorText(error)}`))
        )
        return { connection, statusEvents }
      }),
      "NatsNotifier.connect",
      {
        attributes: {
          "flowcore.notifier": NOTIFIER,
          "flowcore.connect_attempt": ++connectAttempts,
          "server.address": servers.map(withoutUserInfo).join(",")
        },
        captureStackTrace: false
      }
    )
  )

  /** Lives as long as the client does; succeeds (resetting the backoff) only if it had connected before closing. */
  const session = Effect.scoped(
    Effect.gen(function* () {
      const { connection, statusEvents } = yield* connect
      yield* monitor.connected
      yield* Effect.forkScoped(statusEvents)
      const closedWith = yield* Effect.promise(() => connection.closed())
      return closedWith instanceof Error ? `connection closed: ${closedWith.message}` : "connection closed"
    })
  )

  yield* runConnectionLoop(session, monitor, backoff, fail).pipe(Effect.forkScoped)

  return Notifier.of({ name: NOTIFIER, wait: monitor.wait, status: monitor.status })
})

export const NatsNotifier: {
  readonly layer: (options: NatsNotifierOptions) => Layer.Layer<Notifier, never, DataSource | PumpMetrics>
} = {
  layer: (options) => Layer.effect(Notifier, make(options))
}
