/**
 * Live notifications: the `/notifications` WebSocket (protocol §6.1) and optional NATS publishing (§6.2). The HTTP
 * server hands upgrades here, so the `wsHang` fault can simply never complete them.
 */
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import type { NatsConnection } from "@nats-io/transport-node"
import { Result, Schema } from "effect"
import { type RawData, type WebSocket, WebSocketServer } from "ws"
import { decodeWith, describeProblems, type EmulatorFaults } from "./config.ts"
import type { NotificationSink, Resolved } from "./core.ts"
import type { StoredEvent } from "./store.ts"

const NOTIFY_PATTERN = "stored.event.notify.0"

const SubscriptionSchema = Schema.Struct({
  tenant: Schema.String.check(Schema.isNonEmpty()),
  dataCoreId: Schema.String.check(Schema.isNonEmpty()),
  flowTypeId: Schema.String.check(Schema.isNonEmpty()),
  eventTypeId: Schema.optionalKey(Schema.String.check(Schema.isNonEmpty()))
})
type Subscription = typeof SubscriptionSchema.Type

// Clients may send more than the SDK does; only the fields we match on are checked.
const decodeSubscription = decodeWith(SubscriptionSchema, "ignore")

interface Client {
  readonly ws: WebSocket
  subscription: Subscription | undefined
  dropTimer: ReturnType<typeof setTimeout> | undefined
}

export interface HubStats {
  readonly open: number
  readonly total: number
  readonly natsPublished: number
  readonly natsErrors: number
  readonly lastNatsError: string | undefined
}

export const natsSubject = (dataCoreId: string, flowType: string, eventType: string) =>
  `${NOTIFY_PATTERN}.${dataCoreId}.${flowType}.${eventType}`

export class NotificationHub implements NotificationSink {
  readonly #wss = new WebSocketServer({ noServer: true })
  readonly #clients = new Set<Client>()
  readonly #pending = new Set<Duplex>()
  readonly #faults: () => EmulatorFaults
  #nats: NatsConnection | undefined
  #total = 0
  #natsPublished = 0
  #natsErrors = 0
  #lastNatsError: string | undefined

  constructor(faults: () => EmulatorFaults) {
    this.#faults = faults
  }

  get active(): boolean {
    return this.#clients.size > 0 || this.#nats !== undefined
  }

  get stats(): HubStats {
    return {
      open: this.#clients.size,
      total: this.#total,
      natsPublished: this.#natsPublished,
      natsErrors: this.#natsErrors,
      lastNatsError: this.#lastNatsError
    }
  }

  attachNats(connection: NatsConnection | undefined): void {
    this.#nats = connection
  }

  /** Takes over an upgrade request for `/notifications`; `authorized` comes from the query-string credentials. */
  upgrade(request: IncomingMessage, socket: Duplex, head: Buffer, authorized: boolean): void {
    socket.on("error", () => socket.destroy())
    this.#pending.add(socket)
    socket.once("close", () => this.#pending.delete(socket))
    if (this.#faults().wsHang) return
    if (!authorized) {
      const body = JSON.stringify({ message: "Unauthorized", statusCode: 401 })
      socket.end(
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n" +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        () => socket.destroy()
      )
      return
    }
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      this.#pending.delete(socket)
      this.#accept(ws)
    })
  }

  #accept(ws: WebSocket): void {
    const client: Client = { ws, subscription: undefined, dropTimer: undefined }
    this.#clients.add(client)
    this.#total++
    const dropAfter = this.#faults().wsDropAfterMs
    if (dropAfter > 0) client.dropTimer = setTimeout(() => ws.terminate(), dropAfter)
    ws.on("message", (data, isBinary) => this.#onMessage(client, data, isBinary))
    ws.on("error", () => ws.terminate())
    ws.on("close", () => {
      clearTimeout(client.dropTimer)
      this.#clients.delete(client)
    })
  }

  #onMessage(client: Client, data: RawData, isBinary: boolean): void {
    const text = Array.isArray(data)
      ? Buffer.concat(data).toString("utf8")
      : Buffer.isBuffer(data)
        ? data.toString("utf8")
        : Buffer.from(data).toString("utf8")
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      this.#reject(client, text, [
        { path: "(root)", message: `Expected a JSON object${isBinary ? " (got a binary frame)" : ""}` }
      ])
      return
    }
    const decoded = decodeSubscription(json)
    if (Result.isFailure(decoded)) {
      this.#reject(client, json, decoded.failure)
      return
    }
    client.subscription = decoded.success
  }

  #reject(client: Client, found: unknown, errors: ReadonlyArray<{ readonly path: string; readonly message: string }>) {
    client.ws.send(
      JSON.stringify({
        type: "validation",
        summary: "Invalid subscription message",
        message: `Expected {tenant, dataCoreId, flowTypeId, eventTypeId?}: ${describeProblems(errors)}`,
        found,
        errors
      })
    )
  }

  readonly publish = (resolved: Resolved, event: StoredEvent): void => {
    const inner = JSON.stringify({
      pattern: NOTIFY_PATTERN,
      data: {
        tenantId: resolved.tenant.id,
        eventId: event.eventId,
        dataCore: resolved.dataCore.id,
        aggregator: resolved.flowType.name,
        eventType: resolved.eventType.name,
        validTime: event.validTime
      }
    })
    if (this.#clients.size > 0) {
      const frame = JSON.stringify({ message: inner })
      for (const client of this.#clients) {
        const sub = client.subscription
        if (
          sub !== undefined &&
          (sub.tenant === resolved.tenant.name || sub.tenant === resolved.tenant.id) &&
          sub.dataCoreId === resolved.dataCore.id &&
          sub.flowTypeId === resolved.flowType.id &&
          (sub.eventTypeId === undefined || sub.eventTypeId === resolved.eventType.id)
        ) {
          client.ws.send(frame)
        }
      }
    }
    const nats = this.#nats
    if (nats !== undefined) {
      try {
        nats.publish(natsSubject(resolved.dataCore.id, resolved.flowType.name, resolved.eventType.name), inner)
        this.#natsPublished++
      } catch (error) {
        this.#natsErrors++
        this.#lastNatsError = error instanceof Error ? error.message : String(error)
      }
    }
  }

  /** Abruptly destroys every open WebSocket (the client sees 1006); returns how many. */
  dropAll(): number {
    const n = this.#clients.size
    for (const client of this.#clients) {
      clearTimeout(client.dropTimer)
      client.ws.terminate()
    }
    return n
  }

  close(): void {
    this.dropAll()
    for (const socket of this.#pending) socket.destroy()
    this.#pending.clear()
    this.#wss.close()
  }
}
