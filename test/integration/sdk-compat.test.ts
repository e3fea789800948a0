/**
 * The original `@flowcore/sdk@1.79.0`, as an independent client, against the emulator: what it ingests it reads back
 * exactly, and every read command the data pump uses validates the emulator's responses.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  ClientError,
  DataCoreFetchCommand,
  EventListCommand,
  EventsFetchCommand,
  EventsFetchTimeBucketsByNamesCommand,
  EventTypeFetchCommand,
  EventTypeListCommand,
  FlowcoreClient,
  FlowTypeFetchCommand,
  IngestBatchCommand,
  IngestEventCommand,
  NotFoundException,
  SendPumpPulseCommand,
  TenantInstanceFetchCommand,
  TenantTranslateNameToIdCommand,
  TimeBucketListCommand
} from "@flowcore/sdk"
import { Effect } from "effect"
import { compare, TimeUuid } from "../../src/domain/TimeUuid.ts"
import { type EmulatorConfig, make } from "../../src/emulator/index.ts"

const config: EmulatorConfig = {
  tenants: [
    {
      name: "acme",
      dataCores: [
        {
          name: "orders",
          flowTypes: [{ name: "order.0", eventTypes: [{ name: "order.created.0" }, { name: "order.paid.0" }] }]
        }
      ]
    },
    { name: "bigcorp", dedicated: { domain: "bigcorp.flowcore.example" }, dataCores: [] }
  ]
}

const sdkClient = (baseUrl: string, apiKey = "fc_emulator_secret") =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // retry: null so a failing call fails at once instead of sleeping through the SDK's fixed 250 ms retries
      const client = new FlowcoreClient({ apiKey, retry: null })
      client.setBaseUrl(baseUrl)
      return client
    }),
    // close() clears the SDK's module-global tenant cache and its (un-unref'd) 60 s timers
    (client) => Effect.sync(() => client.close())
  )

const run = <T>(promise: () => Promise<T>) => Effect.promise(promise)

/** Every event of a bucket, page by page through `read` (given the cursor of the page to read), ten pages at most. */
const readPages = <E>(
  read: (cursor: {
    readonly cursor?: string
  }) => Promise<{ readonly events: ReadonlyArray<E>; readonly nextCursor?: string }>
) =>
  Effect.gen(function* () {
    const events: Array<E> = []
    let cursor: string | undefined
    for (let page = 0; page < 10; page++) {
      const result = yield* run(() => read(cursor === undefined ? {} : { cursor }))
      events.push(...result.events)
      cursor = result.nextCursor
      if (cursor === undefined) break
    }
    return events
  })

describe("@flowcore/sdk 1.79.0 against the emulator", () => {
  it.live("ingests single and batch events with metadata, event time and valid time, and reads them back exactly", () =>
    Effect.gen(function* () {
      const emu = yield* make({ config })
      const client = yield* sdkClient(emu.url)
      const { dataCoreId } = emu.ids("acme", "orders", "order.0")

      const single = yield* run(() =>
        client.execute(
          new IngestEventCommand({
            tenantName: "acme",
            dataCoreId,
            flowTypeName: "order.0",
            eventTypeName: "order.created.0",
            eventData: { orderId: "o-1", total: 12.5 },
            metadata: { source: "sdk-test" },
            eventTime: "2024-03-01T10:15:00.000Z",
            validTime: "2024-03-01T12:00:00.000Z"
          })
        )
      )
      expect(single.success).toBe(true)
      expect(TimeUuid.fromString(single.eventId).getDate().toISOString()).toBe("2024-03-01T10:15:00.000Z")

      const batch = yield* run(() =>
        client.execute(
          new IngestBatchCommand({
            tenantName: "acme",
            dataCoreId,
            flowTypeName: "order.0",
            eventTypeName: "order.paid.0",
            events: [{ orderId: "o-1" }, { orderId: "o-2" }, { orderId: "o-3" }],
            metadata: { batch: "yes" },
            eventTime: "2024-03-01T10:30:00.000Z"
          })
        )
      )
      expect(batch.success).toBe(true)
      expect(batch.eventIds).toHaveLength(3)

      // an ingest without an event time lands in the current hour
      const now = yield* run(() =>
        client.execute(
          new IngestEventCommand({
            tenantName: "acme",
            dataCoreId: "orders",
            flowTypeName: "order.0",
            eventTypeName: "order.created.0",
            eventData: { orderId: "o-now" }
          })
        )
      )

      const instance = yield* run(() => client.execute(new TenantInstanceFetchCommand({ tenant: "acme" })))
      expect(instance).toEqual({ isDedicated: false, instance: null })
      const translated = yield* run(() => client.execute(new TenantTranslateNameToIdCommand({ tenant: "acme" })))
      expect(translated).toEqual({ id: emu.ids("acme", "orders", "order.0").tenantId, name: "acme" })

      const dataCore = yield* run(() =>
        client.execute(new DataCoreFetchCommand({ tenant: "acme", dataCore: "orders" }))
      )
      expect(dataCore.id).toBe(dataCoreId)
      expect(dataCore.tenant).toBe("acme")
      const sameCore = yield* run(() => client.execute(new DataCoreFetchCommand({ dataCoreId })))
      expect(sameCore).toEqual(dataCore)

      const flowType = yield* run(() =>
        client.execute(new FlowTypeFetchCommand({ dataCoreId: dataCore.id, flowType: "order.0" }))
      )
      expect(flowType.id).toBe(emu.ids("acme", "orders", "order.0").flowTypeId)

      const eventTypes = yield* run(() => client.execute(new EventTypeListCommand({ flowTypeId: flowType.id })))
      expect(eventTypes.map((et) => et.name)).toEqual(["order.created.0", "order.paid.0"])
      const paidType = yield* run(() =>
        client.execute(new EventTypeFetchCommand({ flowTypeId: flowType.id, eventType: "order.paid.0" }))
      )
      expect(paidType).toEqual(eventTypes[1])
      const eventTypeIds = eventTypes.map((et) => et.id) as [string, ...Array<string>]

      const buckets = yield* run(() =>
        client.execute(new TimeBucketListCommand({ tenant: "acme", eventTypeId: eventTypeIds, pageSize: 1 }))
      )
      expect(buckets.timeBuckets).toEqual(["20240301100000"])
      expect(buckets.nextCursor).toBe(1)
      const rest = yield* run(() =>
        client.execute(
          new TimeBucketListCommand({
            tenant: "acme",
            eventTypeId: eventTypeIds,
            pageSize: 1,
            cursor: buckets.nextCursor as number
          })
        )
      )
      const nowBucket = (yield* run(() =>
        client.execute(new TimeBucketListCommand({ tenant: "acme", eventTypeId: eventTypeIds }))
      )).timeBuckets[1]
      expect(rest).toEqual({ timeBuckets: [nowBucket] })

      const read = yield* readPages((page) =>
        client.execute(
          new EventListCommand({
            tenant: "acme",
            eventTypeId: eventTypeIds,
            timeBucket: "20240301100000",
            pageSize: 2,
            ...page
          })
        )
      )
      const common = { tenant: "acme", dataCoreId, flowType: "order.0", timeBucket: "20240301100000" }
      expect(read).toEqual([
        {
          ...common,
          eventId: single.eventId,
          eventType: "order.created.0",
          metadata: { source: "sdk-test" },
          payload: { orderId: "o-1", total: 12.5 },
          validTime: "2024-03-01T12:00:00.000Z"
        },
        ...[...batch.eventIds].sort(compare).map((eventId) => ({
          ...common,
          eventId,
          eventType: "order.paid.0",
          metadata: { batch: "yes" },
          payload: { orderId: `o-${batch.eventIds.indexOf(eventId) + 1}` },
          validTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT/)
        }))
      ])

      const afterFirst = yield* run(() =>
        client.execute(
          new EventListCommand({
            tenant: "acme",
            eventTypeId: eventTypeIds,
            timeBucket: "20240301100000",
            afterEventId: single.eventId
          })
        )
      )
      expect(afterFirst.events.map((e) => e.eventId)).toEqual([...batch.eventIds].sort(compare))

      const live = yield* run(() =>
        client.execute(
          new EventListCommand({ tenant: "acme", eventTypeId: eventTypeIds[0], timeBucket: nowBucket as string })
        )
      )
      expect(live.events.map((e) => e.eventId)).toEqual([now.eventId])
    })
  )

  it.live("the by-names reads (EventsFetch, EventsFetchTimeBucketsByNames) return what the id-based ones do", () =>
    Effect.gen(function* () {
      const emu = yield* make({ config })
      const client = yield* sdkClient(emu.url)
      const names = { tenant: "acme", dataCore: "orders", flowType: "order.0" }
      const at = Date.parse("2024-03-01T10:05:00.000Z")
      emu.ingestMany(
        Array.from({ length: 5 }, (_, i) => ({
          ...names,
          eventType: i % 2 === 0 ? "order.created.0" : "order.paid.0",
          payload: { i },
          eventTime: new Date(at + i * 1000)
        }))
      )
      emu.ingest({ ...names, eventType: "order.paid.0", payload: { late: true }, eventTime: new Date(at + 3_600_000) })
      const { dataCoreId } = emu.ids("acme", "orders", "order.0")
      const byNames = {
        tenant: "acme",
        dataCoreId,
        flowType: "order.0",
        eventTypes: ["order.created.0", "order.paid.0"]
      }

      const buckets = yield* run(() =>
        client.execute(new EventsFetchTimeBucketsByNamesCommand({ ...byNames, pageSize: 1 }))
      )
      expect(buckets).toEqual({ timeBuckets: ["20240301100000"], nextCursor: 1 })
      const second = yield* run(() =>
        client.execute(new EventsFetchTimeBucketsByNamesCommand({ ...byNames, cursor: 1 }))
      )
      expect(second).toEqual({ timeBuckets: ["20240301110000"] })

      const read = yield* readPages((page) =>
        client.execute(new EventsFetchCommand({ ...byNames, timeBucket: "20240301100000", pageSize: 2, ...page }))
      )
      expect(read.map((event) => event.payload)).toEqual([0, 1, 2, 3, 4].map((i) => ({ i })))

      const missing = yield* Effect.promise(() =>
        client
          .execute(new EventsFetchCommand({ ...byNames, eventTypes: ["order.lost.0"], timeBucket: "20240301100000" }))
          .then(
            () => undefined,
            (error: unknown) => error
          )
      )
      // This command maps no status to an exception of its own: a 404 naming the unknown event type.
      expect(missing).toBeInstanceOf(ClientError)
      expect(String((missing as Error).message)).toContain('Event type \\"order.lost.0\\" not found')
    })
  )

  it.live("a dedicated tenant still reads through the base URL override; errors map to the SDK's exceptions", () =>
    Effect.gen(function* () {
      const emu = yield* make({ config })
      const client = yield* sdkClient(emu.url)
      expect(yield* run(() => client.execute(new TenantInstanceFetchCommand({ tenant: "bigcorp" })))).toEqual({
        isDedicated: true,
        instance: { status: "active", domain: "bigcorp.flowcore.example" }
      })
      emu.ingest({ tenant: "bigcorp", dataCore: "main", flowType: "x.0", eventType: "x.made.0", payload: { n: 1 } })
      const { eventTypeIds } = emu.ids("bigcorp", "main", "x.0")
      const buckets = yield* run(() =>
        client.execute(
          new TimeBucketListCommand({ tenant: "bigcorp", eventTypeId: eventTypeIds["x.made.0"] as string })
        )
      )
      expect(buckets.timeBuckets).toHaveLength(1)
      // our explicit fetch plus the SDK's own dedicated-tenant lookup before TimeBucketList
      expect(emu.stats.byPath["/api/v1/tenants/by-name/bigcorp/instance"]).toBe(2)

      const missing = yield* Effect.promise(() =>
        client.execute(new DataCoreFetchCommand({ tenant: "acme", dataCore: "nope" })).then(
          () => undefined,
          (error: unknown) => error
        )
      )
      expect(missing).toBeInstanceOf(NotFoundException)

      const pulse = yield* run(() =>
        client.execute(
          new SendPumpPulseCommand({
            pathwayId: "pathway-1",
            flowType: "order.0",
            timeBucket: "20240301100000",
            eventId: null,
            isLive: false,
            buffer: { depth: 0, reserved: 0, sizeBytes: 0 },
            counters: { acknowledged: 0, failed: 0, pulled: 0 },
            uptimeMs: 1
          })
        )
      )
      expect(pulse).toEqual({ status: "ok" })
      expect(emu.stats.pulses).toHaveLength(1)

      const intruder = yield* sdkClient(emu.url, "fc_emulator_wrong")
      const denied = yield* Effect.promise(() =>
        intruder.execute(new DataCoreFetchCommand({ tenant: "acme", dataCore: "orders" })).then(
          () => undefined,
          (error: unknown) => error
        )
      )
      expect(denied).toBeInstanceOf(ClientError)
      expect((denied as ClientError).status).toBe(401)
    })
  )
})
