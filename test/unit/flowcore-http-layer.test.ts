import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Fiber, Layer, Option, Redacted, Schedule, Tracer } from "effect"
import { HttpClient, HttpClientResponse } from "effect/http"
import { TestClock } from "effect/testing"
import type { FlowcoreAuth, FlowcoreConnection } from "../../src/domain/config.ts"
import type { DataSourceError } from "../../src/domain/errors.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"
import { FlowcoreHttp, type FlowcoreHttpOptions } from "../../src/layers/dataSource/FlowcoreHttp.ts"
import { parseRetryAfter, retrySchedule, safeExcerpt } from "../../src/layers/dataSource/HttpCommand.ts"
import { DataSource, type EventPage } from "../../src/services/DataSource.ts"
import { noopRecorder, PumpMetrics } from "../../src/services/PumpMetrics.ts"

// ---------------------------------------------------------------------------------------------------------------
// A node:http server on 127.0.0.1:0 that records every request and answers from a per-test handler.

interface Seen {
  readonly method: string
  readonly path: string
  /** The raw query string, to assert parameter order exactly. */
  readonly query: string
  readonly headers: IncomingHttpHeaders
}

interface Reply {
  readonly status?: number
  readonly body?: unknown
  /** Sent as is instead of JSON-encoding `body`. */
  readonly raw?: string
  readonly headers?: Record<string, string>
  /** Never answer (the client must time out). */
  readonly hang?: boolean
}

interface RecordingServer {
  readonly url: string
  readonly seen: Array<Seen>
  readonly paths: () => Array<string>
  /** Resolves when the n-th request (1-based) has arrived. */
  readonly arrived: (n: number) => Promise<void>
}

const API_KEY = "fc_keyid_s3cr3tValue"
const ET_IDS: Record<string, string> = { "user.created.0": "et-created", "user.updated.0": "et-updated" }

const dataCoreJson = {
  id: "dc-id",
  tenantId: "tenant-id",
  tenant: "acme",
  name: "main",
  description: "",
  accessControl: "private",
  deleteProtection: false,
  isDeleting: false,
  isFlowcoreManaged: false
}
const flowTypeJson = {
  id: "ft-id",
  tenantId: "tenant-id",
  dataCoreId: "dc-id",
  name: "user.0",
  description: "",
  isDeleting: false
}
const eventTypeJson = (name: string) => ({
  id: ET_IDS[name],
  tenantId: "tenant-id",
  dataCoreId: "dc-id",
  flowTypeId: "ft-id",
  name,
  description: "",
  isTruncating: false,
  isDeleting: false,
  createdAt: "2024-01-01T00:00:00.000Z",
  updatedAt: null
})
const makeEvent = (eventType: string, extra: Record<string, unknown> = {}) => ({
  eventId: TimeUuid.fromDate(new Date("2024-03-15T14:10:00.000Z")).toString(),
  timeBucket: "20240315140000",
  tenant: "acme",
  dataCoreId: "dc-id",
  flowType: "user.0",
  eventType,
  metadata: { source: "test" },
  payload: { name: "Ada", note: "ünïcödé" },
  validTime: "2024-03-15T14:10:00.000Z",
  ...extra
})

/** Answers every Flowcore path with a valid response; tests override what they need. */
const flowcoreRoutes = (req: Seen): Reply => {
  switch (req.path) {
    case "/api/v1/tenants/by-name/acme/instance":
      return { body: { isDedicated: false, instance: null } }
    case "/api/v1/data-cores":
      return { body: [dataCoreJson] }
    case "/api/v1/flow-types":
      return { body: [flowTypeJson] }
    case "/api/v1/event-types":
      return { body: [eventTypeJson("user.updated.0"), eventTypeJson("user.created.0")] }
    case "/api/v1/time-buckets":
      return { body: { timeBuckets: ["20240315140000"] } }
    case "/api/v1/events":
      return { body: { events: [makeEvent("user.created.0")] } }
    default:
      return { status: 404, body: { message: `no route ${req.path}`, statusCode: 404 } }
  }
}

const recordingServer = (handler: (req: Seen, index: number) => Reply = flowcoreRoutes) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Server; readonly recording: RecordingServer }>((resume) => {
      const seen: Array<Seen> = []
      const waiters: Array<{ readonly n: number; readonly resolve: () => void }> = []
      const server = createServer((request, response) => {
        const url = new URL(request.url ?? "/", "http://127.0.0.1")
        const entry: Seen = {
          method: request.method ?? "",
          path: url.pathname,
          query: url.search.replace(/^\?/, ""),
          headers: request.headers
        }
        seen.push(entry)
        for (const waiter of waiters.filter((w) => w.n <= seen.length)) waiter.resolve()
        const reply = handler(entry, seen.length - 1)
        request.resume()
        if (reply.hang === true) return
        const body = reply.raw ?? JSON.stringify(reply.body ?? {})
        response.writeHead(reply.status ?? 200, { "content-type": "application/json", ...reply.headers })
        response.end(body)
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({
            server,
            recording: {
              url: `http://127.0.0.1:${port}`,
              seen,
              paths: () => seen.map((s) => s.path),
              arrived: (n) =>
                seen.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))
            }
          })
        )
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ recording }) => recording))

// ---------------------------------------------------------------------------------------------------------------

const apiKeyAuth: FlowcoreAuth = { _tag: "ApiKey", apiKey: Redacted.make(API_KEY), apiKeyId: "keyid" }

const connectionFor = (baseUrlOverride: string | undefined, overrides: Partial<FlowcoreConnection> = {}) =>
  ({
    auth: apiKeyAuth,
    source: { tenant: "acme", dataCore: "main", flowType: "user.0", eventTypes: ["user.created.0", "user.updated.0"] },
    noTranslation: false,
    directMode: false,
    baseUrlOverride,
    ...overrides
  }) satisfies FlowcoreConnection

const fastRetry = { baseDelayMs: 1, maxDelayMs: 5, maxRetries: 2 }

/** Runs `program` against a layer aimed at `server`; `sent` collects every `commandSent` call. */
const withSource = <A, E>(
  program: Effect.Effect<A, E, DataSource>,
  options: Omit<FlowcoreHttpOptions, "connection"> & { readonly connection: FlowcoreConnection },
  sent: Array<string> = []
) =>
  program.pipe(
    Effect.provide(
      FlowcoreHttp.layerNode({ retry: fastRetry, ...options }).pipe(
        Layer.provide(Layer.succeed(PumpMetrics, { ...noopRecorder, commandSent: (c: string) => sent.push(c) }))
      )
    )
  )

const bucket = TimeBucket.make("20240315140000")

describe("FlowcoreHttp translation", () => {
  it.live("resolves names to ids with the three lookups, in configuration order, once", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const sent: Array<string> = []
      const [first, second] = yield* withSource(
        Effect.all([DataSource.use((ds) => ds.resolve), DataSource.use((ds) => ds.resolve)]),
        { connection: connectionFor(server.url) },
        sent
      )
      expect(first).toEqual({
        tenant: "acme",
        dataCore: "main",
        dataCoreId: "dc-id",
        flowType: "user.0",
        flowTypeId: "ft-id",
        eventTypes: ["user.created.0", "user.updated.0"],
        eventTypeIds: ["et-created", "et-updated"]
      })
      expect(second).toEqual(first)
      expect(server.seen.map((s) => `${s.path}?${s.query}`)).toEqual([
        "/api/v1/data-cores?tenant=acme&name=main",
        "/api/v1/flow-types?dataCoreId=dc-id&name=user.0",
        "/api/v1/event-types?flowTypeId=ft-id"
      ])
      expect(sent).toEqual(["DataCoreFetch", "FlowTypeFetch", "EventTypeList"])
      expect(server.seen.every((s) => s.method === "GET")).toBe(true)
    })
  )

  it.live("an unknown data core is NotFound naming it and the tenant, and the failure is not cached", () =>
    Effect.gen(function* () {
      let dataCoreExists = false
      const server = yield* recordingServer((req) =>
        req.path === "/api/v1/data-cores" && !dataCoreExists ? { body: [] } : flowcoreRoutes(req)
      )
      const [error, resolved] = yield* withSource(
        Effect.gen(function* () {
          const ds = yield* DataSource
          const error = yield* Effect.flip(ds.resolve)
          dataCoreExists = true
          return [error, yield* ds.resolve] as const
        }),
        { connection: connectionFor(server.url) }
      )
      expect(error.kind).toBe("NotFound")
      expect(error.command).toBe("DataCoreFetch")
      expect(error.retryable).toBe(false)
      expect(error.message).toContain('data core "main"')
      expect(error.message).toContain('tenant "acme"')
      expect(resolved.dataCoreId).toBe("dc-id")
      expect(server.paths().filter((p) => p === "/api/v1/data-cores")).toHaveLength(2)
    })
  )

  it.live("an unknown event type name fails with NotFound listing the names that exist", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(server.url, {
          source: { tenant: "acme", dataCore: "main", flowType: "user.0", eventTypes: ["user.created.0", "nope.0"] }
        })
      })
      expect(error.kind).toBe("NotFound")
      expect(error.command).toBe("EventTypeList")
      expect(error.message).toContain('"nope.0"')
      expect(error.message).toContain('"user.created.0"')
      expect(error.message).toContain('"user.updated.0"')
    })
  )

  it.live("noTranslation uses the configured strings as ids and makes no lookup", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const resolved = yield* withSource(
        DataSource.use((ds) => Effect.andThen(ds.fetchPage({ timeBucket: bucket, pageSize: 5 }), ds.resolve)),
        { connection: connectionFor(server.url, { noTranslation: true, directMode: true }) }
      )
      expect(resolved.dataCoreId).toBe("main")
      expect(resolved.flowTypeId).toBe("user.0")
      expect(resolved.eventTypeIds).toEqual(["user.created.0", "user.updated.0"])
      expect(server.seen.map((s) => `${s.path}?${s.query}`)).toEqual([
        "/api/v1/events?eventTypeId=user.created.0&eventTypeId=user.updated.0&timeBucket=20240315140000&pageSize=5"
      ])
    })
  )
})

describe("FlowcoreHttp event pages", () => {
  it.live("sends the parameters in protocol order and reports the body size", () =>
    Effect.gen(function* () {
      const extra = makeEvent("user.updated.0", { serverAddedField: { kept: true } })
      const responseBody = JSON.stringify({ events: [makeEvent("user.created.0"), extra], nextCursor: "c2" })
      const server = yield* recordingServer((req) =>
        req.path === "/api/v1/events" ? { raw: responseBody } : flowcoreRoutes(req)
      )
      const after = TimeUuid.fromDate(new Date("2024-03-15T14:00:00.000Z")).toString()
      const to = TimeUuid.fromDate(new Date("2024-03-15T14:30:00.000Z")).toString()
      const [positioned, continued] = yield* withSource(
        DataSource.use((ds) =>
          Effect.all([
            ds.fetchPage({ timeBucket: bucket, pageSize: 100, afterEventId: after, toEventId: to }),
            ds.fetchPage({
              timeBucket: bucket,
              pageSize: 50,
              cursor: "c2",
              afterEventId: after,
              toEventId: to,
              includeSensitiveData: true
            })
          ])
        ),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      const events = server.seen.filter((s) => s.path === "/api/v1/events").map((s) => s.query)
      expect(events).toEqual([
        `eventTypeId=et-created&eventTypeId=et-updated&timeBucket=20240315140000&pageSize=100&afterEventId=${after}&toEventId=${to}`,
        `eventTypeId=et-created&eventTypeId=et-updated&timeBucket=20240315140000&cursor=c2&pageSize=50&toEventId=${to}&includeSensitiveData=true`
      ])
      expect(positioned.nextCursor).toBe("c2")
      expect(positioned.sizeBytes).toBe(Buffer.byteLength(responseBody, "utf8"))
      expect(positioned.events).toHaveLength(2)
      expect(positioned.events[1]).toEqual(extra)
      expect(positioned.events[1]?.serverAddedField).toEqual({ kept: true })
      expect(continued.events).toHaveLength(2)
    })
  )

  it.live("an absent nextCursor means the bucket is exhausted", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const page = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 10 })),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      expect(page.nextCursor).toBeUndefined()
      expect(page.events.map((e) => e.eventType)).toEqual(["user.created.0"])
    })
  )

  it.live("a malformed event, a null nextCursor and a non-JSON body fail once with retryable errors", () =>
    Effect.gen(function* () {
      const replies: Array<Reply> = [
        { body: { events: [{ ...makeEvent("user.created.0"), payload: [1, 2] }] } },
        { body: { events: [], nextCursor: null } },
        { raw: '{"events": [' }
      ]
      let next = 0
      const server = yield* recordingServer((req) =>
        req.path === "/api/v1/events" ? (replies[next++] ?? {}) : flowcoreRoutes(req)
      )
      const sent: Array<string> = []
      const errors = yield* withSource(
        DataSource.use((ds) =>
          Effect.forEach([0, 1, 2], () => Effect.flip(ds.fetchPage({ timeBucket: bucket, pageSize: 10 })))
        ),
        { connection: connectionFor(server.url, { directMode: true }) },
        sent
      )
      expect(errors.map((e) => [e.command, e.kind, e.retryable])).toEqual([
        ["EventList", "Decode", true],
        ["EventList", "Decode", true],
        ["EventList", "NotJson", true]
      ])
      expect(errors[0]?.message).toContain("payload")
      expect(errors[1]?.message).toContain("nextCursor")
      expect(sent.filter((c) => c === "EventList")).toHaveLength(3)
    })
  )
})

describe("FlowcoreHttp read-ahead", () => {
  /**
   * `count` pages of one bucket (three by default), chained by cursor (c2, c3, ...), one event each; `fail` answers
   * those request numbers (0-based) with a 500.
   */
  const pagedServer = (fail: ReadonlySet<number> = new Set(), count = 3) => {
    const eventTypes = ["user.created.0", "user.created.0", "user.updated.0"]
    const pages: Record<string, { readonly events: Array<unknown>; readonly nextCursor?: string }> = {}
    for (let n = 1; n <= count; n++) {
      pages[n === 1 ? "" : `c${n}`] = {
        events: [makeEvent(eventTypes[(n - 1) % 3] as string, { n })],
        ...(n < count ? { nextCursor: `c${n + 1}` } : {})
      }
    }
    let eventRequests = 0
    return recordingServer((req) => {
      if (req.path !== "/api/v1/events") return flowcoreRoutes(req)
      if (fail.has(eventRequests++)) return { status: 500, body: { message: "injected", statusCode: 500 } }
      return { body: pages[new URLSearchParams(req.query).get("cursor") ?? ""] }
    })
  }
  const eventQueries = (server: RecordingServer) =>
    server.seen.filter((s) => s.path === "/api/v1/events").map((s) => new URLSearchParams(s.query))

  it.live(
    "the next page is requested as soon as this one is in, the one after once that is in, and served from there",
    () =>
      Effect.gen(function* () {
        const server = yield* pagedServer()
        const ns = yield* withSource(
          DataSource.use((ds) =>
            Effect.gen(function* () {
              const first = yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, readAhead: 7 })
              // Pages 2 and 3 arrive without anyone asking for them yet (after 3 lookups and page 1).
              yield* Effect.promise(() => server.arrived(6))
              expect(eventQueries(server).map((q) => [q.get("cursor"), q.get("pageSize")])).toEqual([
                [null, "10"],
                ["c2", "7"],
                ["c3", "7"]
              ])
              const beforeSecond = Date.now()
              const second = yield* ds.fetchPage({ timeBucket: bucket, pageSize: 7, cursor: "c2", readAhead: 7 })
              const third = yield* ds.fetchPage({ timeBucket: bucket, pageSize: 9, cursor: "c3", readAhead: 7 })
              // Each page says whether the next one is on its way, and a page read ahead says when it was asked for.
              expect([first, second, third].map((page) => page.readAhead)).toEqual([7, 7, undefined])
              expect(first.requestedAt).toBeUndefined()
              expect(second.requestedAt).toBeLessThanOrEqual(beforeSecond)
              expect(third.requestedAt).toBeGreaterThanOrEqual(second.requestedAt ?? Number.POSITIVE_INFINITY)
              return [first, second, third].map((page) => page.events.map((event) => event.n))
            })
          ),
          { connection: connectionFor(server.url, { directMode: true }) }
        )
        expect(ns).toEqual([[1], [2], [3]])
        // Each page requested once: pages 2 and 3 were read ahead, and the last page (no cursor) reads nothing more.
        expect(eventQueries(server).map((q) => q.get("cursor"))).toEqual([null, "c2", "c3"])
      })
  )

  it.live("no more than two pages are requested ahead of the pages asked for", () =>
    Effect.gen(function* () {
      const server = yield* pagedServer(new Set(), 6)
      yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            const cursors = () => eventQueries(server).map((q) => q.get("cursor"))
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, readAhead: 5 })
            yield* Effect.promise(() => server.arrived(6))
            // Time for a third read-ahead to go out, were there one.
            yield* Effect.sleep("100 millis")
            expect(cursors()).toEqual([null, "c2", "c3"])
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 5, cursor: "c2", readAhead: 5 })
            yield* Effect.promise(() => server.arrived(7))
            yield* Effect.sleep("100 millis")
            expect(cursors()).toEqual([null, "c2", "c3", "c4"])
          })
        ),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
    })
  )

  it.live("a request for fewer events than were read ahead, or a read-ahead that failed, is requested again", () =>
    Effect.gen(function* () {
      // Request #2 (the read-ahead of c3, made once c2's is in) fails; its page must still arrive, through a request
      // of its own.
      const server = yield* pagedServer(new Set([2]))
      const sizes = yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, readAhead: 7 })
            yield* Effect.promise(() => server.arrived(6))
            const second = yield* ds.fetchPage({ timeBucket: bucket, pageSize: 5, cursor: "c2", readAhead: 7 })
            const third = yield* ds.fetchPage({ timeBucket: bucket, pageSize: 7, cursor: "c3" })
            return [second.events.length, third.events.length, third.nextCursor]
          })
        ),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      expect(sizes).toEqual([1, 1, undefined])
      expect(eventQueries(server).map((q) => [q.get("cursor"), q.get("pageSize")])).toEqual([
        [null, "10"],
        ["c2", "7"], // read ahead, but page 2 was then asked for with only 5 slots
        ["c3", "7"], // read ahead once c2 was in: answered 500
        ["c2", "5"],
        ["c3", "7"]
      ])
    })
  )

  it.live("no read-ahead without room for it, and none from a page that fails to decode", () =>
    Effect.gen(function* () {
      let eventRequests = 0
      const server = yield* recordingServer((req) =>
        req.path !== "/api/v1/events"
          ? flowcoreRoutes(req)
          : eventRequests++ === 2
            ? { raw: `{"events": [{"eventId": "not-an-event"}], "nextCursor": "c2"}` }
            : { body: { events: [makeEvent("user.created.0")], nextCursor: "c2" } }
      )
      const errorKind = yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10 })
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, readAhead: 0 })
            const error = yield* Effect.flip(ds.fetchPage({ timeBucket: bucket, pageSize: 10, readAhead: 10 }))
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, cursor: "c2" })
            return error.kind
          })
        ),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      expect(errorKind).toBe("Decode")
      // The read-ahead of c2 went out with the broken page, which was then dropped: c2 is fetched again.
      expect(eventQueries(server).map((q) => q.get("cursor"))).toEqual([null, null, null, "c2", "c2"])
    })
  )
})

describe("FlowcoreHttp pages read whole, handed out in parts", () => {
  /** Event `n` of the bucket, ids in time order. */
  const nth = (n: number) => ({
    ...makeEvent("user.created.0", {
      eventId: TimeUuid.fromDate(new Date(Date.parse("2024-03-15T14:00:00.000Z") + n * 1000)).toString()
    }),
    n
  })
  const pageOne = Array.from({ length: 25 }, (_, n) => nth(n))
  const pageTwo = Array.from({ length: 5 }, (_, n) => nth(25 + n))
  /** Page one (25 events, then c2), page two (5 events, the end); `raw` replaces page one's body. */
  const twoPages = (raw?: string) =>
    recordingServer((req) => {
      if (req.path !== "/api/v1/events") return flowcoreRoutes(req)
      const query = new URLSearchParams(req.query)
      if (query.get("cursor") === "c2") return { body: { events: pageTwo } }
      const after = query.get("afterEventId")
      if (after !== null) {
        return { body: { events: pageOne.slice(pageOne.findIndex((e) => e.eventId === after) + 1), nextCursor: "c2" } }
      }
      return raw === undefined ? { body: { events: pageOne, nextCursor: "c2" } } : { raw }
    })
  const eventQueries = (server: RecordingServer) =>
    server.seen.filter((s) => s.path === "/api/v1/events").map((s) => new URLSearchParams(s.query))
  /** Follows the pages' cursors to the end of the bucket, `pageSize` events at most per call, `afterEach` after each. */
  const readBucket = (pageSize: number, afterEach: () => void = () => {}) =>
    DataSource.use((ds) =>
      Effect.gen(function* () {
        const pages: Array<EventPage> = []
        let cursor: string | undefined
        do {
          const page = yield* ds.fetchPage({
            timeBucket: bucket,
            pageSize,
            cursor,
            readAhead: pageSize,
            readPageSize: 100
          })
          pages.push(page)
          afterEach()
          cursor = page.nextCursor
        } while (cursor !== undefined)
        return pages
      })
    )

  it.live("one request per server page, its events handed out pageSize at a time, in order", () =>
    Effect.gen(function* () {
      const server = yield* twoPages()
      const pages = yield* withSource(readBucket(10), { connection: connectionFor(server.url, { directMode: true }) })
      expect(pages.map((page) => page.events.length)).toEqual([10, 10, 5, 5])
      expect(pages.flatMap((page) => page.events.map((event) => event.n))).toEqual(
        [...pageOne, ...pageTwo].map((e) => e.n)
      )
      // Parts continue with cursors of the layer's own; the last part of a page continues with the server's cursor.
      expect(pages[0]?.nextCursor).not.toBe("c2")
      expect(pages.map((page) => page.nextCursor).slice(2)).toEqual(["c2", undefined])
      // Each part says the next one is held (room for a whole one is worth waiting for), the last part of page one
      // that the server's next page was requested ahead, for a page of 100.
      expect(pages.map((page) => page.readAhead)).toEqual([10, 5, 100, undefined])
      // Each server page once, for 100 events: the second one read ahead.
      expect(eventQueries(server).map((q) => [q.get("cursor"), q.get("pageSize")])).toEqual([
        [null, "100"],
        ["c2", "100"]
      ])
      // A part shows the bucket as it was when its page was requested.
      expect(pages[1]?.requestedAt).toBe(pages[0]?.requestedAt)
      expect(pages[1]?.requestedAt).toBeDefined()
      expect(pages[0]?.sizeBytes).toBe(JSON.stringify(pageOne.slice(0, 10)).length - 2)
    })
  )

  it.live("a part says whether the page read ahead is still on its way (then the caller lets I/O in)", () =>
    Effect.gen(function* () {
      // Page two never answers: it stays on its way while page one is handed out.
      const hanging = yield* recordingServer((req) => {
        if (req.path !== "/api/v1/events") return flowcoreRoutes(req)
        return new URLSearchParams(req.query).get("cursor") === "c2"
          ? { hang: true }
          : { body: { events: pageOne, nextCursor: "c2" } }
      })
      const takeParts = (count: number, between: Effect.Effect<void> = Effect.void) =>
        DataSource.use((ds) =>
          Effect.gen(function* () {
            const pages: Array<EventPage> = []
            let cursor: string | undefined
            for (let i = 0; i < count; i++) {
              if (i > 0) yield* between
              const page = yield* ds.fetchPage({
                timeBucket: bucket,
                pageSize: 5,
                cursor,
                readAhead: 5,
                readPageSize: 100
              })
              pages.push(page)
              cursor = page.nextCursor
            }
            return pages
          })
        )
      const pending = yield* withSource(takeParts(5), {
        connection: connectionFor(hanging.url, { directMode: true })
      })
      // Page one in five parts, the last one continuing with the server's cursor: page two never came in.
      expect(pending.map((page) => page.nextCursor).at(-1)).toBe("c2")
      expect(pending.map((page) => page.responsePending)).toEqual([true, true, true, true, true])

      // Page two answers: once it is in, a part no longer asks for I/O to be let in.
      const answering = yield* twoPages()
      const arrived = yield* withSource(
        takeParts(2, Effect.promise(() => answering.arrived(2)).pipe(Effect.andThen(Effect.sleep("300 millis")))),
        { connection: connectionFor(answering.url, { directMode: true }) }
      )
      expect(arrived.map((page) => page.responsePending)).toEqual([true, false])
    })
  )

  it.live("a part this layer does not hold is read from the server, after the last event handed out", () =>
    Effect.gen(function* () {
      const server = yield* twoPages()
      const connection = connectionFor(server.url, { directMode: true })
      const first = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 10, readPageSize: 100 })),
        { connection }
      )
      // Another layer (as after a restart, or another pump) gets the cursor of that part.
      const rest = yield* withSource(
        DataSource.use((ds) =>
          ds.fetchPage({ timeBucket: bucket, pageSize: 10, cursor: first.nextCursor, readPageSize: 100 })
        ),
        { connection }
      )
      expect(rest.events).toHaveLength(10)
      const second = eventQueries(server)[1]
      expect(second?.get("cursor")).toBeNull()
      expect(second?.get("afterEventId")).toBe(pageOne[9]?.eventId)
      expect(second?.get("pageSize")).toBe("100")
    })
  )

  it.live(
    "a part that does not parse fails as NotJson, and asking again reads on after the last event handed out",
    () =>
      Effect.gen(function* () {
        const events = pageOne.map((event) => JSON.stringify(event))
        events[14] = `{"eventId": "broken", oops}`
        const server = yield* twoPages(`{"events":[${events.join(",")}],"nextCursor":"c2"}`)
        const result = yield* withSource(
          DataSource.use((ds) =>
            Effect.gen(function* () {
              const first = yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, readPageSize: 100 })
              const request = { timeBucket: bucket, pageSize: 10, cursor: first.nextCursor, readPageSize: 100 }
              const error = yield* Effect.flip(ds.fetchPage(request))
              const again = yield* ds.fetchPage(request)
              return { first, error, again }
            })
          ),
          { connection: connectionFor(server.url, { directMode: true }) }
        )
        expect(result.first.events.map((event) => event.n)).toEqual(pageOne.slice(0, 10).map((e) => e.n))
        expect([result.error.kind, result.error.retryable]).toEqual(["NotJson", true])
        expect(result.again.events.map((event) => event.n)).toEqual(pageOne.slice(10, 20).map((e) => e.n))
        expect(eventQueries(server)[1]?.get("afterEventId")).toBe(pageOne[9]?.eventId)
      })
  )

  it.live("a body the splitter cannot follow (an escaped key) is decoded whole and still handed out in parts", () =>
    Effect.gen(function* () {
      const raw = JSON.stringify({ events: pageOne, nextCursor: "c2" }).replace('"events"', '"\\u0065vents"')
      const server = yield* twoPages(raw)
      const pages = yield* withSource(readBucket(10), { connection: connectionFor(server.url, { directMode: true }) })
      expect(pages.map((page) => page.events.length)).toEqual([10, 10, 5, 5])
      expect(pages.flatMap((page) => page.events.map((event) => event.n))).toEqual(
        [...pageOne, ...pageTwo].map((e) => e.n)
      )
    })
  )

  it.live(
    "a later member written like events does not hide the cursor: the last part reads it from the corrected rest",
    () =>
      Effect.gen(function* () {
        const raw = JSON.stringify({ events: pageOne, nextCursor: "c2", copies: [nth(90), nth(91)] })
        const server = yield* twoPages(raw)
        const pages = yield* withSource(readBucket(10), { connection: connectionFor(server.url, { directMode: true }) })
        expect(pages.flatMap((page) => page.events.map((event) => event.n))).toEqual(
          [...pageOne, ...pageTwo].map((e) => e.n)
        )
        expect(pages.map((page) => page.nextCursor).slice(2)).toEqual(["c2", undefined])
      })
  )

  it.live("pages no larger than pageSize are decoded whole, as before", () =>
    Effect.gen(function* () {
      const server = yield* twoPages()
      const page = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 100, readPageSize: 100 })),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      expect(page.events).toHaveLength(25)
      expect(page.nextCursor).toBe("c2")
      expect(page.requestedAt).toBeUndefined()
    })
  )
})

describe("FlowcoreHttp read-ahead of the following bucket", () => {
  const nextBucket = TimeBucket.make("20240315150000")
  const inBucket = (n: number, hour: TimeBucket.TimeBucket) => ({
    ...makeEvent("user.created.0", {
      eventId: TimeUuid.fromDate(new Date(TimeBucket.toEpochMillis(hour) + n * 1000)).toString(),
      timeBucket: hour
    }),
    n
  })
  /** Bucket 14:00 holds 3 events (one page), bucket 15:00 holds 30 (one page). */
  const twoBuckets = () =>
    recordingServer((req) => {
      if (req.path !== "/api/v1/events") return flowcoreRoutes(req)
      const hour = new URLSearchParams(req.query).get("timeBucket")
      const events =
        hour === nextBucket
          ? Array.from({ length: 30 }, (_, n) => inBucket(n, nextBucket))
          : Array.from({ length: 3 }, (_, n) => inBucket(n, bucket))
      return { body: { events } }
    })
  const eventQueries = (server: RecordingServer) =>
    server.seen.filter((s) => s.path === "/api/v1/events").map((s) => new URLSearchParams(s.query))

  it.live("a page that ends its bucket requests the following bucket's first page, served in parts from there", () =>
    Effect.gen(function* () {
      const server = yield* twoBuckets()
      const pages = yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            const last = yield* ds.fetchPage({
              timeBucket: bucket,
              pageSize: 100,
              readAhead: 100,
              readPageSize: 100,
              followingBucket: nextBucket
            })
            // The following bucket's first page is on its way before anyone asks for it.
            yield* Effect.promise(() => server.arrived(5))
            const beforeAsking = Date.now()
            // By now the buffer has room for 20 only: the page read ahead is handed out in parts.
            const first = yield* ds.fetchPage({
              timeBucket: nextBucket,
              pageSize: 20,
              readAhead: 20,
              readPageSize: 100
            })
            const rest = yield* ds.fetchPage({
              timeBucket: nextBucket,
              pageSize: 20,
              cursor: first.nextCursor,
              readPageSize: 100
            })
            expect(first.requestedAt).toBeLessThanOrEqual(beforeAsking)
            return [last, first, rest]
          })
        ),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      expect(pages.map((page) => page.events.length)).toEqual([3, 20, 10])
      expect(pages[2]?.nextCursor).toBeUndefined()
      expect(pages.slice(1).flatMap((page) => page.events.map((event) => event.n))).toEqual(
        Array.from({ length: 30 }, (_, n) => n)
      )
      // One request per bucket: the second one made ahead, for a whole page.
      expect(eventQueries(server).map((q) => [q.get("timeBucket"), q.get("pageSize"), q.get("cursor")])).toEqual([
        [bucket, "100", null],
        [nextBucket, "100", null]
      ])
    })
  )

  it.live("no following bucket is read ahead without the hint, or while the page has a next cursor", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((req) =>
        req.path !== "/api/v1/events"
          ? flowcoreRoutes(req)
          : new URLSearchParams(req.query).get("cursor") === null
            ? { body: { events: [makeEvent("user.created.0")], nextCursor: "c2" } }
            : { body: { events: [] } }
      )
      yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, readAhead: 10, followingBucket: nextBucket })
            yield* ds.fetchPage({
              timeBucket: bucket,
              pageSize: 10,
              cursor: "c2",
              readAhead: 0,
              followingBucket: nextBucket
            })
            yield* ds.fetchPage({ timeBucket: bucket, pageSize: 10, cursor: "c2", readAhead: 10 })
            yield* Effect.sleep("100 millis")
          })
        ),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      expect(eventQueries(server).map((q) => q.get("timeBucket"))).not.toContain(nextBucket)
    })
  )
})

describe("FlowcoreHttp tracing", () => {
  it.live("requests get a client span (and its traceparent) only under a real tracer", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const names: Array<string> = []
      // Any tracer other than Effect's default one; it records span names and makes native spans.
      const recording = Tracer.make({
        span: (options) => {
          names.push(options.name)
          return Tracer.nativeTracer.span(options)
        }
      })
      const fetchOne = withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 10 })),
        { connection: connectionFor(server.url, { directMode: true }) }
      )
      yield* fetchOne
      const untraced = server.seen.length
      expect(untraced).toBeGreaterThan(0)
      for (const seen of server.seen)
        expect([seen.headers.traceparent, seen.headers.b3]).toEqual([undefined, undefined])

      yield* fetchOne.pipe(Effect.provideService(Tracer.Tracer, recording))
      const traced = server.seen.slice(untraced)
      expect(traced.length).toBe(untraced)
      for (const seen of traced) expect(seen.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
      expect(names.filter((name) => name.startsWith("GET")).length).toBe(traced.length)
    })
  )
})

describe("FlowcoreHttp time buckets", () => {
  it.live("pages with the cursor in order, sorts, de-duplicates and caches until refresh", () =>
    Effect.gen(function* () {
      const pages: Record<string, Reply> = {
        "": { body: { timeBuckets: ["20240315150000", "20240315140000"], nextCursor: 2 } },
        "2": { body: { timeBuckets: ["20240315150000", "20240101000000"], nextCursor: 4 } },
        "4": { body: { timeBuckets: ["20240316000000"] } }
      }
      const server = yield* recordingServer((req) => {
        if (req.path !== "/api/v1/time-buckets") return flowcoreRoutes(req)
        const cursor = new URLSearchParams(req.query).get("cursor") ?? ""
        return pages[cursor] ?? { status: 400, body: { message: "bad cursor" } }
      })
      const [first, cached, refreshed] = yield* withSource(
        DataSource.use((ds) => Effect.all([ds.timeBuckets(), ds.timeBuckets(), ds.timeBuckets({ refresh: true })])),
        { connection: connectionFor(server.url, { directMode: true }), timeBucketPageSize: 2 }
      )
      expect(first).toEqual(["20240101000000", "20240315140000", "20240315150000", "20240316000000"])
      expect(cached).toEqual(first)
      expect(refreshed).toEqual(first)
      const queries = server.seen.filter((s) => s.path === "/api/v1/time-buckets").map((s) => s.query)
      const prefix = "eventTypeId=et-created&eventTypeId=et-updated&pageSize=2"
      expect(queries).toEqual([
        prefix,
        `${prefix}&cursor=2`,
        `${prefix}&cursor=4`,
        prefix,
        `${prefix}&cursor=2`,
        `${prefix}&cursor=4`
      ])
    })
  )

  it.live("uses page size 10000 by default", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      yield* withSource(
        DataSource.use((ds) => ds.timeBuckets()),
        { connection: connectionFor(server.url, { directMode: true, noTranslation: true }) }
      )
      expect(server.seen.map((s) => s.query)).toEqual([
        "eventTypeId=user.created.0&eventTypeId=user.updated.0&pageSize=10000"
      ])
    })
  )

  it.live("a cursor of 0, a repeated cursor and a backwards cursor end the listing instead of looping", () =>
    Effect.gen(function* () {
      const scenarios: ReadonlyArray<ReadonlyArray<number>> = [[0], [3, 3], [5, 2]]
      for (const cursors of scenarios) {
        const server = yield* recordingServer((req, index) => {
          if (req.path !== "/api/v1/time-buckets") return flowcoreRoutes(req)
          if (index >= cursors.length) return { status: 500, body: { message: "looped" } }
          return { body: { timeBuckets: ["20240315140000"], nextCursor: cursors[index] } }
        })
        const buckets = yield* withSource(
          DataSource.use((ds) => ds.timeBuckets()),
          { connection: connectionFor(server.url, { directMode: true, noTranslation: true }) }
        )
        expect(buckets).toEqual(["20240315140000"])
        expect(server.seen.length).toBe(cursors.length)
      }
    })
  )

  it.live("an invalid bucket string is a Decode error naming it", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((req) =>
        req.path === "/api/v1/time-buckets"
          ? { body: { timeBuckets: ["20240315140000", "20241301000000"] } }
          : flowcoreRoutes(req)
      )
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.timeBuckets())), {
        connection: connectionFor(server.url, { directMode: true })
      })
      expect(error.kind).toBe("Decode")
      expect(error.command).toBe("TimeBucketList")
      expect(error.message).toContain("20241301000000")
    })
  )
})

describe("FlowcoreHttp auth", () => {
  it.live("sends `ApiKey <id>:<key>` on every call", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 })),
        { connection: connectionFor(server.url) }
      )
      expect(server.seen.length).toBe(5)
      expect(server.seen.map((s) => s.headers.authorization)).toEqual(Array(5).fill(`ApiKey keyid:${API_KEY}`))
    })
  )

  it.live("calls the bearer function for every request and sends no header when it yields no token", () =>
    Effect.gen(function* () {
      let calls = 0
      const tokens: Array<Option.Option<string>> = [Option.some("tok-1"), Option.none(), Option.some("tok-3")]
      const bearer: FlowcoreAuth = {
        _tag: "Bearer",
        getToken: Effect.sync(() => Option.map(tokens[calls++] ?? Option.none(), Redacted.make))
      }
      const server = yield* recordingServer()
      yield* withSource(
        DataSource.use((ds) =>
          Effect.forEach([0, 1, 2], () => ds.fetchPage({ timeBucket: bucket, pageSize: 1 }), { discard: true })
        ),
        { connection: connectionFor(server.url, { auth: bearer, noTranslation: true, directMode: true }) }
      )
      expect(calls).toBe(3)
      expect(server.seen.map((s) => s.headers.authorization)).toEqual(["Bearer tok-1", undefined, "Bearer tok-3"])
    })
  )

  it.live("401 is kind Auth, not retried, and never shows the key", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((req) => ({
        status: 401,
        body: { message: `Unauthorized: bad header ${req.headers.authorization}`, statusCode: 401 }
      }))
      const sent: Array<string> = []
      const error = yield* withSource(
        Effect.flip(DataSource.use((ds) => ds.resolve)),
        { connection: connectionFor(server.url) },
        sent
      )
      expect(error.kind).toBe("Auth")
      expect(error.status).toBe(401)
      expect(error.retryable).toBe(false)
      expect(error.command).toBe("DataCoreFetch")
      expect(error.message).toContain("401")
      expect(error.message).not.toContain("s3cr3tValue")
      expect(error.message).not.toContain(API_KEY)
      expect(error.message).toContain("<redacted>")
      expect(sent).toEqual(["DataCoreFetch"])
    })
  )

  it.live("a failing bearer provider is an Auth error and no request is sent", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const bearer: FlowcoreAuth = { _tag: "Bearer", getToken: Effect.fail(new Error("oidc endpoint down")) }
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(server.url, { auth: bearer })
      })
      expect(error.kind).toBe("Auth")
      expect(error.message).toContain("oidc endpoint down")
      expect(server.seen).toHaveLength(0)
    })
  )
})

describe("FlowcoreHttp retries and failures", () => {
  it.live("503 is retried and the call then succeeds; every attempt is counted", () =>
    Effect.gen(function* () {
      let failures = 2
      const server = yield* recordingServer((req) =>
        req.path === "/api/v1/events" && failures-- > 0
          ? { status: 503, body: { message: "busy" } }
          : flowcoreRoutes(req)
      )
      const sent: Array<string> = []
      const page = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 })),
        { connection: connectionFor(server.url, { noTranslation: true, directMode: true }) },
        sent
      )
      expect(page.events).toHaveLength(1)
      expect(sent).toEqual(["EventList", "EventList", "EventList"])
    })
  )

  it.live("a persistent 500 gives up after maxRetries with kind Status", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer(() => ({ status: 500, body: { message: "internal boom" } }))
      const error = yield* withSource(
        Effect.flip(DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 }))),
        { connection: connectionFor(server.url, { noTranslation: true, directMode: true }) }
      )
      expect(server.seen).toHaveLength(3)
      expect(error.kind).toBe("Status")
      expect(error.status).toBe(500)
      expect(error.retryable).toBe(true)
      expect(error.message).toContain("EventList")
      expect(error.message).toContain("500")
      expect(error.message).toContain("internal boom")
      expect(error.message).toContain("3 attempts")
    })
  )

  it.live("404 and 400 fail fast", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((_, index) => ({
        status: index === 0 ? 404 : 400,
        body: { message: "no" }
      }))
      const [notFound, bad] = yield* withSource(
        DataSource.use((ds) =>
          Effect.all([
            Effect.flip(ds.fetchPage({ timeBucket: bucket, pageSize: 1 })),
            Effect.flip(ds.fetchPage({ timeBucket: bucket, pageSize: 1 }))
          ])
        ),
        { connection: connectionFor(server.url, { noTranslation: true, directMode: true }) }
      )
      expect(server.seen).toHaveLength(2)
      expect([notFound.kind, notFound.status, notFound.retryable]).toEqual(["Status", 404, false])
      expect([bad.kind, bad.status, bad.retryable]).toEqual(["Status", 400, false])
    })
  )

  it.live("a request that outlives requestTimeoutMs is a Timeout, retried", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer(() => ({ hang: true }))
      const error = yield* withSource(
        Effect.flip(DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 }))),
        {
          connection: connectionFor(server.url, { noTranslation: true, directMode: true }),
          requestTimeoutMs: 50,
          retry: { baseDelayMs: 1, maxDelayMs: 5, maxRetries: 1 }
        }
      )
      expect(error.kind).toBe("Timeout")
      expect(error.retryable).toBe(true)
      expect(error.message).toContain("50 ms")
      expect(server.seen).toHaveLength(2)
    })
  )

  it.live("a refused connection is a Transport error, retried", () =>
    Effect.gen(function* () {
      const closed = yield* Effect.scoped(Effect.map(recordingServer(), (s) => s.url))
      const sent: Array<string> = []
      const error = yield* withSource(
        Effect.flip(DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 }))),
        { connection: connectionFor(closed, { noTranslation: true, directMode: true }) },
        sent
      )
      expect(error.kind).toBe("Transport")
      expect(error.retryable).toBe(true)
      expect(sent).toHaveLength(3)
    })
  )

  it.effect("Retry-After is honoured: the retry waits for it on the clock", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((_, index) =>
        index === 0
          ? { status: 429, headers: { "retry-after": "30" }, body: { message: "slow down" } }
          : flowcoreRoutes(_)
      )
      const fiber = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 })),
        {
          connection: connectionFor(server.url, { noTranslation: true, directMode: true }),
          requestTimeoutMs: 600_000,
          retry: { baseDelayMs: 1, maxDelayMs: 60_000, maxRetries: 3 }
        }
      ).pipe(Effect.forkChild)
      yield* Effect.promise(() => server.arrived(1))
      let advancedSeconds = 0
      while (server.seen.length < 2 && advancedSeconds < 120) {
        yield* TestClock.adjust("1 second")
        advancedSeconds++
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
      }
      const page = yield* Fiber.await(fiber)
      expect(page._tag).toBe("Success")
      expect(server.seen).toHaveLength(2)
      // Without Retry-After the 1 ms backoff would have retried within the first virtual second.
      expect(advancedSeconds).toBeGreaterThanOrEqual(30)
    })
  )

  it.live("an error body echoing credentials is scrubbed", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((req) => ({
        status: 500,
        raw: `proxy error; got ${req.headers.authorization} and key ${API_KEY} token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig`
      }))
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(server.url),
        retry: { baseDelayMs: 1, maxDelayMs: 1, maxRetries: 0 }
      })
      expect(error.message).not.toContain("s3cr3tValue")
      expect(error.message).not.toContain("eyJzdWIiOiIxIn0")
      expect(error.message).toContain("proxy error")
      expect(server.seen).toHaveLength(1)
    })
  )
})

describe("FlowcoreHttp dedicated tenants", () => {
  it.live("looks the tenant instance up once for buckets and pages, and not at all in direct mode", () =>
    Effect.gen(function* () {
      for (const directMode of [false, true]) {
        const server = yield* recordingServer()
        yield* withSource(
          DataSource.use((ds) =>
            Effect.all([
              ds.timeBuckets(),
              ds.fetchPage({ timeBucket: bucket, pageSize: 1 }),
              ds.fetchPage({ timeBucket: bucket, pageSize: 1 })
            ])
          ),
          { connection: connectionFor(server.url, { directMode }) }
        )
        const lookups = server.paths().filter((p) => p === "/api/v1/tenants/by-name/acme/instance")
        expect(lookups).toHaveLength(directMode ? 0 : 1)
      }
    })
  )

  it.effect("the instance lookup is cached for 60 seconds", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const lookups = () => server.paths().filter((p) => p.endsWith("/instance")).length
      const counts = yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            const page = ds.fetchPage({ timeBucket: bucket, pageSize: 1 })
            yield* page
            yield* TestClock.adjust("59 seconds")
            yield* page
            const before = lookups()
            yield* TestClock.adjust("2 seconds")
            yield* page
            return [before, lookups()]
          })
        ),
        { connection: connectionFor(server.url, { noTranslation: true }) }
      )
      expect(counts).toEqual([1, 2])
    })
  )

  it.live("a dedicated tenant with an override still uses the override; without a domain it fails", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer((req) =>
        req.path.endsWith("/instance")
          ? { body: { isDedicated: true, instance: { status: "active", domain: "acme.example.com" } } }
          : flowcoreRoutes(req)
      )
      const page = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 })),
        {
          connection: connectionFor(server.url, { noTranslation: true })
        }
      )
      expect(page.events).toHaveLength(1)
      expect(server.paths()).toEqual(["/api/v1/tenants/by-name/acme/instance", "/api/v1/events"])

      const noDomain = yield* recordingServer((req) =>
        req.path.endsWith("/instance") ? { body: { isDedicated: true, instance: null } } : flowcoreRoutes(req)
      )
      const error = yield* withSource(
        Effect.flip(DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 }))),
        { connection: connectionFor(noDomain.url, { noTranslation: true }) }
      )
      expect(error.command).toBe("TenantInstanceFetch")
      expect(error.kind).toBe("NotFound")
      expect(error.message).toContain('tenant "acme"')
      expect(error.message).toContain("no dedicated domain")
      expect(noDomain.paths()).toEqual(["/api/v1/tenants/by-name/acme/instance"])
    })
  )

  it.live("an unknown tenant (404 on the instance lookup) is NotFound and not retried", () =>
    Effect.gen(function* () {
      const server = yield* recordingServer()
      const error = yield* withSource(
        Effect.flip(DataSource.use((ds) => ds.fetchPage({ timeBucket: bucket, pageSize: 1 }))),
        {
          connection: connectionFor(server.url, {
            noTranslation: true,
            source: { tenant: "ghost", dataCore: "main", flowType: "user.0", eventTypes: ["user.created.0"] }
          })
        }
      )
      expect([error.command, error.kind, error.retryable]).toEqual(["TenantInstanceFetch", "NotFound", false])
      expect(error.message).toContain('tenant "ghost"')
      expect(server.paths()).toEqual(["/api/v1/tenants/by-name/ghost/instance"])
    })
  )

  it.effect("without an override each command uses its public host, and a dedicated tenant its own event-source", () =>
    Effect.gen(function* () {
      const urls: Array<string> = []
      const fake = HttpClient.make((request, url) => {
        urls.push(url.toString())
        const route = flowcoreRoutes({ method: "GET", path: url.pathname, query: url.search.slice(1), headers: {} })
        const body = url.pathname.endsWith("/instance")
          ? { isDedicated: true, instance: { status: "active", domain: "acme.flowcore.cloud" } }
          : route.body
        return Effect.succeed(
          HttpClientResponse.fromWeb(request, new Response(JSON.stringify(body), { status: route.status ?? 200 }))
        )
      })
      yield* DataSource.use((ds) =>
        Effect.all([ds.timeBuckets(), ds.fetchPage({ timeBucket: bucket, pageSize: 1 })])
      ).pipe(
        Effect.provide(
          FlowcoreHttp.layer({ connection: connectionFor(undefined) }).pipe(
            Layer.provide(Layer.succeed(HttpClient.HttpClient, fake)),
            Layer.provide(PumpMetrics.none)
          )
        )
      )
      expect(urls).toEqual([
        "https://data-core-2.api.flowcore.io/api/v1/data-cores?tenant=acme&name=main",
        "https://flow-type-2.api.flowcore.io/api/v1/flow-types?dataCoreId=dc-id&name=user.0",
        "https://event-type-2.api.flowcore.io/api/v1/event-types?flowTypeId=ft-id",
        "https://tenant.api.flowcore.io/api/v1/tenants/by-name/acme/instance",
        "https://event-source.acme.flowcore.cloud/api/v1/time-buckets?eventTypeId=et-created&eventTypeId=et-updated&pageSize=10000",
        "https://event-source.acme.flowcore.cloud/api/v1/events?eventTypeId=et-created&eventTypeId=et-updated&timeBucket=20240315140000&pageSize=1"
      ])
    })
  )
})

describe("FlowcoreHttp options", () => {
  it.effect("invalid options are a defect naming the option", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [Partial<FlowcoreHttpOptions>, string]> = [
        [{ requestTimeoutMs: 0 }, "requestTimeoutMs"],
        [{ retry: { maxRetries: -1 } }, "retry.maxRetries"],
        [{ retry: { baseDelayMs: 500, maxDelayMs: 100 } }, "retry.maxDelayMs"],
        [{ connection: connectionFor("not a url") }, "baseUrlOverride"]
      ]
      for (const [options, field] of cases) {
        const exit = yield* Effect.exit(
          DataSource.use((ds) => ds.resolve).pipe(
            Effect.provide(
              FlowcoreHttp.layerNode({ connection: connectionFor("http://127.0.0.1:1"), ...options }).pipe(
                Layer.provide(PumpMetrics.none)
              )
            )
          )
        )
        expect(exit._tag).toBe("Failure")
        expect(String(exit._tag === "Failure" ? Cause.squash(exit.cause) : "")).toContain(`"${field}"`)
      }
    })
  )
})

describe("FlowcoreHttp helpers", () => {
  it("parses Retry-After as seconds or as an HTTP date", () => {
    const now = Date.parse("2024-03-15T14:00:00.000Z")
    expect(parseRetryAfter("3", now)).toBe(3000)
    expect(parseRetryAfter("0.5", now)).toBe(500)
    expect(parseRetryAfter("Fri, 15 Mar 2024 14:00:07 GMT", now)).toBe(7000)
    expect(parseRetryAfter("Fri, 15 Mar 2024 13:00:00 GMT", now)).toBe(0)
    expect(parseRetryAfter("soon", now)).toBeUndefined()
    expect(parseRetryAfter(undefined, now)).toBeUndefined()
  })

  it.effect("backoff grows, is capped after jitter, takes Retry-After as a floor and stops after maxRetries", () =>
    Effect.gen(function* () {
      const step = yield* Schedule.toStep(retrySchedule({ baseDelayMs: 100, maxDelayMs: 1_000, maxRetries: 6 }))
      const plain = { retryAfterMs: undefined } as unknown as DataSourceError
      const delays: Array<number> = []
      for (let i = 0; i < 5; i++) delays.push(Duration.toMillis((yield* step(0, plain))[1]))
      expect(delays[0]).toBeGreaterThanOrEqual(80)
      expect(delays[0]).toBeLessThanOrEqual(120)
      expect(delays[1]).toBeGreaterThanOrEqual(160)
      expect(delays.every((d) => d <= 1_000)).toBe(true)
      expect(delays[4]).toBe(1_000)
      const limited = yield* Schedule.toStep(retrySchedule({ baseDelayMs: 10, maxDelayMs: 10_000, maxRetries: 2 }))
      const honoured = Duration.toMillis((yield* limited(0, { retryAfterMs: 4_000 } as DataSourceError))[1])
      expect(honoured).toBe(4_000)
      const capped = Duration.toMillis((yield* limited(0, { retryAfterMs: 60_000 } as DataSourceError))[1])
      expect(capped).toBe(10_000)
      const exhausted = yield* Effect.exit(limited(0, plain))
      expect(exhausted._tag).toBe("Failure")
    })
  )

  it("scrubs credentials and keeps excerpts short", () => {
    const text = `denied ApiKey abc:fc_abc_secretpart and Bearer xyz.tok ${"x".repeat(500)}`
    const excerpt = safeExcerpt(text, ["fc_abc_secretpart"])
    expect(excerpt).not.toContain("secretpart")
    expect(excerpt).not.toContain("xyz.tok")
    expect(excerpt.length).toBeLessThanOrEqual(200)
  })
})
