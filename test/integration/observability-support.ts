/**
 * Shared by the observability tests: the emulator's flow type, credentials that are easy to search for, a logger that
 * keeps every line, a proxy that makes the credentials fail on purpose, and helpers to look for secrets in text.
 */
import { randomUUID } from "node:crypto"
import { createServer, request, type Server } from "node:http"
import { connect, type Socket } from "node:net"
import { inspect } from "node:util"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import type { FlowcoreLogger } from "../../src/compat/options.ts"
import { type Emulator, type EmulatorOptions, start } from "../../src/emulator/index.ts"

export const HOUR = 3_600_000

export const SOURCE = {
  tenant: "acme",
  dataCore: "shop",
  flowType: "orders.0",
  eventTypes: ["order.created.0", "order.paid.0"]
} as const

/** Unique per run so a match can only come from a leak, never from unrelated text. */
export const API_KEY_ID = "obskey"
export const API_SECRET = `s3cr3t${randomUUID().replaceAll("-", "")}`
export const API_KEY = `fc_${API_KEY_ID}_${API_SECRET}`
export const BEARER_TOKEN = `tok${randomUUID().replaceAll("-", "")}`

/** The emulator accepts both credentials above (and its default key). */
export const emulatorOptions: EmulatorOptions = {
  config: { apiKeys: ["fc_emulator_secret", API_KEY], bearerTokens: [BEARER_TOKEN] }
}

export const acquireEmulator = (options: EmulatorOptions = emulatorOptions) =>
  Effect.acquireRelease(
    Effect.promise(() => start(options)),
    (emulator) => Effect.promise(() => emulator.close())
  )

/** `count` events of the test flow type spread over the hour that began `hoursAgo` hours ago, alternating types. */
export const seed = (
  emulator: Emulator,
  count: number,
  hoursAgo: number,
  metadataOf: (index: number) => Record<string, unknown> | undefined = () => undefined
): ReadonlyArray<string> => {
  const hourStart = Math.floor((Date.now() - hoursAgo * HOUR) / HOUR) * HOUR
  return emulator.ingestMany(
    Array.from({ length: count }, (_, i) => {
      const metadata = metadataOf(i)
      return {
        ...SOURCE,
        eventType: SOURCE.eventTypes[i % 2] as string,
        payload: { n: i },
        eventTime: new Date(hourStart + 1000 + i * 1000),
        ...(metadata === undefined ? {} : { metadata })
      }
    })
  )
}

export type Level = "debug" | "info" | "warn" | "error"

export interface LogLine {
  readonly level: Level
  readonly message: string
  /** What `error` received when it was an Error. */
  readonly error: Error | undefined
  readonly metadata: Record<string, unknown> | undefined
}

/** A README-style logger that records every call. */
export const captureLogger = () => {
  const lines: Array<LogLine> = []
  const record = (level: Level) => (message: string | Error, metadata?: Record<string, unknown>) => {
    lines.push({
      level,
      message: message instanceof Error ? message.message : message,
      error: message instanceof Error ? message : undefined,
      metadata
    })
  }
  const logger: FlowcoreLogger = {
    debug: record("debug"),
    info: record("info"),
    warn: record("warn"),
    error: record("error")
  }
  return { lines, logger }
}

/** Every way a log line can be read: its text, its error's stack, its metadata as JSON and as inspected. */
export const logLineText = (line: LogLine): string => {
  let json: string
  try {
    json = JSON.stringify(line.metadata) ?? ""
  } catch (error) {
    json = `unserialisable: ${String(error)}`
  }
  return [
    line.level,
    line.message,
    line.error?.stack ?? "",
    inspect(line.error, { depth: 10 }),
    json,
    inspect(line.metadata, { depth: 10 })
  ].join("\n")
}

/** Everything a tracing backend receives of a span, except its ids and timings. */
export const spanText = (span: ReadableSpan): string =>
  inspect(
    {
      name: span.name,
      attributes: span.attributes,
      status: span.status,
      events: span.events.map((event) => ({ name: event.name, attributes: event.attributes })),
      links: span.links.map((link) => link.attributes)
    },
    { depth: 10 }
  )

/** Fails naming every place where one of the secrets shows up. */
export const assertNoSecrets = (
  texts: Iterable<readonly [where: string, text: string]>,
  secrets: ReadonlyArray<string>
): number => {
  const leaks: Array<string> = []
  let checked = 0
  for (const [where, text] of texts) {
    checked++
    for (const secret of secrets) {
      if (text.includes(secret)) leaks.push(`${where}: ${text.slice(0, 300)}`)
    }
  }
  if (leaks.length > 0) throw new Error(`secret leaked in ${leaks.length} place(s):\n${leaks.join("\n")}`)
  return checked
}

/** Polls `check` every 20 ms; rejects naming `what` after `timeoutMs`. */
export const waitFor = async (
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

export const eventually = (what: string, check: () => boolean, timeoutMs?: number) =>
  Effect.promise(() => waitFor(what, check, timeoutMs))

export interface CredentialProxy {
  /** Point the pump's base URL override here. */
  readonly url: string
  /**
   * "forward" passes data requests through; "echo-401" answers them with a 401 whose body repeats the Authorization
   * header, as a badly behaved gateway might.
   */
  data: "forward" | "echo-401"
  /** "wrong-credentials" lets WebSocket upgrades reach the emulator with their key or token replaced. */
  webSocket: "forward" | "wrong-credentials"
  readonly close: () => Promise<void>
}

/** An HTTP + WebSocket proxy in front of the emulator that can make the credentials fail on demand. */
export const startCredentialProxy = (emulator: Emulator): Promise<CredentialProxy> =>
  new Promise((resolve) => {
    const sockets = new Set<Socket>()
    const track = (socket: Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
    }
    const server: Server = createServer((req, res) => {
      if (proxy.data === "echo-401") {
        res.writeHead(401, { "content-type": "application/json" })
        res.end(JSON.stringify({ message: `invalid credentials: ${req.headers.authorization ?? "none"}` }))
        return
      }
      const upstream = request(
        {
          host: "127.0.0.1",
          port: emulator.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: false
        },
        (response) => {
          res.writeHead(response.statusCode ?? 502, response.headers)
          response.pipe(res)
        }
      )
      upstream.on("error", () => res.destroy())
      req.pipe(upstream)
    })
    server.on("connection", track)
    server.on("upgrade", (req, socket: Socket, head: Buffer) => {
      const target =
        proxy.webSocket === "wrong-credentials"
          ? (req.url ?? "/").replace(/([?&](?:api_key|token)=)[^&]*/g, "$1wrong-credentials")
          : (req.url ?? "/")
      const upstream = connect(emulator.port, "127.0.0.1", () => {
        const headers: Array<string> = []
        for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
          headers.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`)
        upstream.write(`${req.method} ${target} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n`)
        if (head.length > 0) upstream.write(head)
        upstream.pipe(socket)
        socket.pipe(upstream)
      })
      track(upstream)
      socket.on("close", () => upstream.destroy())
      upstream.on("close", () => socket.destroy())
    })
    let url = ""
    const proxy: CredentialProxy = {
      get url() {
        return url
      },
      data: "forward",
      webSocket: "forward",
      close: () =>
        new Promise<void>((done) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => done())
        })
    }
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      url = `http://127.0.0.1:${port}`
      resolve(proxy)
    })
  })

export const acquireCredentialProxy = (emulator: Emulator) =>
  Effect.acquireRelease(
    Effect.promise(() => startCredentialProxy(emulator)),
    (proxy) => Effect.promise(() => proxy.close())
  )
