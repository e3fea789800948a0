import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { apiKeyAuth, bearerAuth, type FlowcoreAuth, type FlowcoreConnection } from "../../src/domain/config.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import * as TimeUuid from "../../src/domain/TimeUuid.ts"
import { type Emulator, type IngestInput, make as makeEmulator } from "../../src/emulator/index.ts"
import { FlowcoreHttp, type FlowcoreHttpOptions } from "../../src/layers/dataSource/FlowcoreHttp.ts"
import { DataSource, type PageRequest } from "../../src/services/DataSource.ts"
import { noopRecorder, PumpMetrics } from "../../src/services/PumpMetrics.ts"

const EVENT_TYPES = ["user.created.0", "user.updated.0", "user.deleted.0"] as const
const INSTANCE_PATH = "/api/v1/tenants/by-name/acme/instance"

const emulator = () =>
  makeEmulator({
    config: {
      bearerTokens: ["good-token"],
      tenants: [
        {
          name: "acme",
          dataCores: [
            {
              name: "main",
              flowTypes: [
                { name: "user.0", eventTypes: EVENT_TYPES.map((name) => ({ name })) },
                { name: "other.0", eventTypes: [{ name: "other.created.0" }] }
              ]
            }
          ]
        },
        {
          name: "bigco",
          dedicated: { domain: "bigco.flowcore.example" },
          dataCores: [{ name: "main", flowTypes: [{ name: "user.0", eventTypes: [{ name: "user.created.0" }] }] }]
        }
      ]
    }
  })

const requestsTo = (emu: Emulator, path: string) => emu.stats.byPath[path] ?? 0

const connectionFor = (emu: Emulator, auth: FlowcoreAuth, overrides: Partial<FlowcoreConnection> = {}) =>
  ({
    auth,
    // Deliberately not the creation order, to see ids come back in configuration order.
    source: { tenant: "acme", dataCore: "main", flowType: "user.0", eventTypes: ["user.deleted.0", "user.created.0"] },
    noTranslation: false,
    directMode: false,
    baseUrlOverride: emu.url,
    ...overrides
  }) satisfies FlowcoreConnection

const defaultAuth = apiKeyAuth("fc_emulator_secret")

/** Runs against the real Node client; `urls` receives every URL actually sent. */
const withSource = <A, E>(
  program: Effect.Effect<A, E, DataSource>,
  options: Omit<FlowcoreHttpOptions, "connection"> & { readonly connection: FlowcoreConnection },
  urls: Array<URL> = []
) => {
  const recordingClient = Layer.effect(
    HttpClient.HttpClient,
    Effect.map(
      HttpClient.HttpClient,
      HttpClient.tapRequest((request) =>
        Effect.sync(() => Option.map(HttpClientRequest.toUrl(request), (url) => urls.push(url)))
      )
    )
  ).pipe(Layer.provide(NodeHttpClient.layerUndici))
  return program.pipe(
    Effect.provide(
      FlowcoreHttp.layer({ retry: { baseDelayMs: 1, maxDelayMs: 10, maxRetries: 2 }, ...options }).pipe(
        Layer.provide(recordingClient),
        Layer.provide(Layer.succeed(PumpMetrics, noopRecorder))
      )
    )
  )
}

/** Reads one bucket to its end by following cursors. */
const readBucket = (ds: DataSource["Service"], request: PageRequest) =>
  Effect.gen(function* () {
    const ids: Array<string> = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = yield* ds.fetchPage({ ...request, cursor })
      for (const event of page.events) ids.push(event.eventId)
      cursor = page.nextCursor
      pages++
    } while (cursor !== undefined)
    return { ids, pages }
  })

const HOURS = ["2024-03-15T10:00:00.000Z", "2024-03-15T11:00:00.000Z", "2024-03-15T13:00:00.000Z"]

/** 20 events per hour, cycling through the three event types, plus one event of another flow type. */
const seed = (emu: Emulator) => {
  const inputs: Array<IngestInput> = []
  for (const hour of HOURS) {
    for (let i = 0; i < 20; i++) {
      inputs.push({
        tenant: "acme",
        dataCore: "main",
        flowType: "user.0",
        eventType: EVENT_TYPES[i % 3] as string,
        payload: { i, hour },
        eventTime: new Date(Date.parse(hour) + i * 60_000)
      })
    }
  }
  const ids = emu.ingestMany(inputs)
  emu.ingest({ tenant: "acme", dataCore: "main", flowType: "other.0", eventType: "other.created.0", payload: {} })
  return inputs.map((input, i) => ({ ...input, id: ids[i] as string }))
}

describe("FlowcoreHttp against the emulator", () => {
  it.live("translates names to the emulator's ids, in configuration order", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      const resolved = yield* withSource(
        DataSource.use((ds) => ds.resolve),
        { connection: connectionFor(emu, auth) }
      )
      const ids = emu.ids("acme", "main", "user.0")
      expect(resolved.dataCoreId).toBe(ids.dataCoreId)
      expect(resolved.flowTypeId).toBe(ids.flowTypeId)
      expect(resolved.eventTypeIds).toEqual([ids.eventTypeIds["user.deleted.0"], ids.eventTypeIds["user.created.0"]])
    })
  )

  it.live(
    "reads every event of the configured types exactly once, in time order, across cursor pages and buckets",
    () =>
      Effect.gen(function* () {
        const emu = yield* emulator()
        const auth = yield* defaultAuth
        const seeded = seed(emu)
        const wanted = seeded.filter((e) => e.eventType !== "user.updated.0")
        const result = yield* withSource(
          Effect.gen(function* () {
            const ds = yield* DataSource
            const buckets = yield* ds.timeBuckets()
            const perBucket = yield* Effect.forEach(buckets, (timeBucket) =>
              readBucket(ds, { timeBucket, pageSize: 4 })
            )
            return { buckets, perBucket }
          }),
          { connection: connectionFor(emu, auth), timeBucketPageSize: 2 }
        )
        expect(result.buckets).toEqual(["20240315100000", "20240315110000", "20240315130000"])
        expect(requestsTo(emu, "/api/v1/time-buckets")).toBe(2)
        const read = result.perBucket.flatMap((b) => b.ids)
        const expected = wanted.map((e) => e.id).sort(TimeUuid.compare)
        expect(read).toEqual(expected)
        expect(new Set(read).size).toBe(read.length)
        // 13 or 14 events per bucket at 4 per page: several cursor pages each.
        expect(result.perBucket.every((b) => b.pages >= 4)).toBe(true)
      })
  )

  it.live("positions with afterEventId (exclusive) and bounds with toEventId (inclusive)", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      const seeded = seed(emu)
      const inFirstHour = seeded
        .filter((e) => e.eventType !== "user.updated.0" && e.payload.hour === HOURS[0])
        .map((e) => e.id)
        .sort(TimeUuid.compare)
      const after = inFirstHour[2] as string
      const to = inFirstHour[8] as string
      const { ids } = yield* withSource(
        DataSource.use((ds) =>
          readBucket(ds, {
            timeBucket: TimeBucket.make("20240315100000"),
            pageSize: 3,
            afterEventId: after,
            toEventId: to
          })
        ),
        { connection: connectionFor(emu, auth) }
      )
      expect(ids).toEqual(inFirstHour.slice(3, 9))
    })
  )

  it.live("does the dedicated-tenant lookup once (cached) unless directMode is on", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      seed(emu)
      const bucketAndPages = DataSource.use((ds) =>
        Effect.gen(function* () {
          const [first] = yield* ds.timeBuckets()
          const timeBucket = first as TimeBucket.TimeBucket
          yield* ds.fetchPage({ timeBucket, pageSize: 5 })
          yield* ds.fetchPage({ timeBucket, pageSize: 5 })
        })
      )
      yield* withSource(bucketAndPages, { connection: connectionFor(emu, auth) })
      expect(requestsTo(emu, INSTANCE_PATH)).toBe(1)
      yield* withSource(bucketAndPages, { connection: connectionFor(emu, auth, { directMode: true }) })
      expect(requestsTo(emu, INSTANCE_PATH)).toBe(1)
      expect(requestsTo(emu, "/api/v1/events")).toBe(4)
    })
  )

  it.live("a dedicated tenant behind the override keeps reading from the override", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      const id = emu.ingest({
        tenant: "bigco",
        dataCore: "main",
        flowType: "user.0",
        eventType: "user.created.0",
        payload: { dedicated: true },
        eventTime: "2024-03-15T10:30:00.000Z"
      })
      const urls: Array<URL> = []
      const page = yield* withSource(
        DataSource.use((ds) => ds.fetchPage({ timeBucket: TimeBucket.make("20240315100000"), pageSize: 10 })),
        {
          connection: connectionFor(emu, auth, {
            source: { tenant: "bigco", dataCore: "main", flowType: "user.0", eventTypes: ["user.created.0"] }
          })
        },
        urls
      )
      expect(page.events.map((e) => e.eventId)).toEqual([id])
      expect(requestsTo(emu, "/api/v1/tenants/by-name/bigco/instance")).toBe(1)
      expect(urls.every((url) => url.origin === emu.url)).toBe(true)
    })
  )

  it.live("sends includeSensitiveData=true only when asked, and the emulator accepts it", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      seed(emu)
      const urls: Array<URL> = []
      const timeBucket = TimeBucket.make("20240315110000")
      const [plain, sensitive] = yield* withSource(
        DataSource.use((ds) =>
          Effect.all([
            ds.fetchPage({ timeBucket, pageSize: 50 }),
            ds.fetchPage({ timeBucket, pageSize: 50, includeSensitiveData: true })
          ])
        ),
        { connection: connectionFor(emu, auth, { directMode: true }) },
        urls
      )
      const eventUrls = urls.filter((url) => url.pathname === "/api/v1/events")
      expect(eventUrls.map((url) => url.searchParams.get("includeSensitiveData"))).toEqual([null, "true"])
      expect(sensitive.events.map((e) => e.eventId)).toEqual(plain.events.map((e) => e.eventId))
      expect(plain.events.length).toBeGreaterThan(0)
    })
  )

  it.live("an unknown event type name fails with NotFound listing the names that exist", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(emu, auth, {
          source: {
            tenant: "acme",
            dataCore: "main",
            flowType: "user.0",
            eventTypes: ["user.created.0", "user.renamed.0"]
          }
        })
      })
      expect([error.command, error.kind, error.retryable]).toEqual(["EventTypeList", "NotFound", false])
      expect(error.message).toContain('"user.renamed.0"')
      for (const name of EVENT_TYPES) expect(error.message).toContain(`"${name}"`)
    })
  )

  it.live("an unknown data core is NotFound naming it and the tenant", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(emu, auth, {
          source: { tenant: "acme", dataCore: "missing", flowType: "user.0", eventTypes: ["user.created.0"] }
        })
      })
      expect([error.command, error.kind]).toEqual(["DataCoreFetch", "NotFound"])
      expect(error.message).toContain('"missing"')
      expect(error.message).toContain('"acme"')
    })
  )
})

describe("FlowcoreHttp auth against the emulator", () => {
  it.live("a wrong API key is kind Auth, sent once, and the key is not in the message", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* apiKeyAuth("fc_emulator_wrongsecret")
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(emu, auth)
      })
      expect([error.kind, error.status, error.retryable, error.command]).toEqual(["Auth", 401, false, "DataCoreFetch"])
      expect(requestsTo(emu, "/api/v1/data-cores")).toBe(1)
      expect(error.message).not.toContain("wrongsecret")
    })
  )

  it.live("bearer auth: an accepted token reads, a missing token is refused", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      seed(emu)
      const good = yield* withSource(
        DataSource.use((ds) => ds.timeBuckets()),
        {
          connection: connectionFor(
            emu,
            bearerAuth(() => "good-token")
          )
        }
      )
      expect(good).toHaveLength(3)
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.timeBuckets())), {
        connection: connectionFor(
          emu,
          bearerAuth(async () => "")
        )
      })
      expect([error.kind, error.status]).toEqual(["Auth", 401])
    })
  )

  it.live("an API key given as Redacted works the same", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* apiKeyAuth(Redacted.make("fc_emulator_secret"))
      const resolved = yield* withSource(
        DataSource.use((ds) => ds.resolve),
        { connection: connectionFor(emu, auth) }
      )
      expect(resolved.flowTypeId).toBe(emu.ids("acme", "main", "user.0").flowTypeId)
    })
  )
})

describe("FlowcoreHttp error kinds against the emulator", () => {
  it.live("errorRate 1 with 500 is retried maxRetries times, then fails with kind Status", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      seed(emu)
      emu.setFaults({ errorRate: 1, errorStatus: 500 })
      const error = yield* withSource(
        Effect.flip(
          DataSource.use((ds) => ds.fetchPage({ timeBucket: TimeBucket.make("20240315100000"), pageSize: 5 }))
        ),
        { connection: connectionFor(emu, auth, { noTranslation: true, directMode: true }) }
      )
      expect([error.kind, error.status, error.retryable, error.command]).toEqual(["Status", 500, true, "EventList"])
      expect(requestsTo(emu, "/api/v1/events")).toBe(3)
      expect(error.message).toContain("Injected fault")
    })
  )

  it.live("errorRate 1 with 404 fails fast", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      emu.setFaults({ errorRate: 1, errorStatus: 404 })
      const error = yield* withSource(
        Effect.flip(
          DataSource.use((ds) => ds.fetchPage({ timeBucket: TimeBucket.make("20240315100000"), pageSize: 5 }))
        ),
        { connection: connectionFor(emu, auth, { noTranslation: true, directMode: true }) }
      )
      expect([error.kind, error.status, error.retryable]).toEqual(["Status", 404, false])
      expect(requestsTo(emu, "/api/v1/events")).toBe(1)
    })
  )

  it.live("a malformed 200 is NotJson, not retried, and the next call succeeds", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      seed(emu)
      const timeBucket = TimeBucket.make("20240315100000")
      const [error, page] = yield* withSource(
        DataSource.use((ds) =>
          Effect.gen(function* () {
            yield* ds.resolve
            emu.setFaults({ malformedResponses: 1 })
            const error = yield* Effect.flip(ds.fetchPage({ timeBucket, pageSize: 5 }))
            return [error, yield* ds.fetchPage({ timeBucket, pageSize: 5 })] as const
          })
        ),
        { connection: connectionFor(emu, auth, { directMode: true }) }
      )
      expect([error.kind, error.retryable, error.command]).toEqual(["NotJson", true, "EventList"])
      expect(requestsTo(emu, "/api/v1/events")).toBe(2)
      expect(page.events).toHaveLength(5)
    })
  )

  it.live("latency beyond requestTimeoutMs is a Timeout after the retries", () =>
    Effect.gen(function* () {
      const emu = yield* emulator()
      const auth = yield* defaultAuth
      emu.setFaults({ latencyMs: 400 })
      const error = yield* withSource(
        Effect.flip(
          DataSource.use((ds) => ds.fetchPage({ timeBucket: TimeBucket.make("20240315100000"), pageSize: 5 }))
        ),
        {
          connection: connectionFor(emu, auth, { noTranslation: true, directMode: true }),
          requestTimeoutMs: 60,
          retry: { baseDelayMs: 1, maxDelayMs: 5, maxRetries: 1 }
        }
      )
      expect([error.kind, error.retryable, error.command]).toEqual(["Timeout", true, "EventList"])
      expect(requestsTo(emu, "/api/v1/events")).toBe(2)
    })
  )

  it.live("a closed emulator gives a Transport error", () =>
    Effect.gen(function* () {
      const emu = yield* Effect.scoped(emulator())
      const auth = yield* defaultAuth
      const error = yield* withSource(Effect.flip(DataSource.use((ds) => ds.resolve)), {
        connection: connectionFor(emu, auth),
        retry: { baseDelayMs: 1, maxDelayMs: 1, maxRetries: 0 }
      })
      expect([error.kind, error.retryable, error.command]).toEqual(["Transport", true, "DataCoreFetch"])
    })
  )
})
