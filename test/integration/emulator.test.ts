import { type ChildProcess, spawn } from "node:child_process"
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { connect } from "@nats-io/transport-node"
import { Effect, Exit, Logger, Schedule } from "effect"
import WebSocket from "ws"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { compare, TimeUuid } from "../../src/domain/TimeUuid.ts"
import {
  type Emulator,
  type EmulatorConfig,
  EmulatorError,
  type EmulatorOptions,
  FlowcoreEmulator,
  loadConfigFile,
  make,
  natsSubject
} from "../../src/emulator/index.ts"

const KEY = "fc_emulator_secret"
const AUTH = { authorization: `ApiKey emulator:${KEY}` }
const INGEST_AUTH = { authorization: KEY, "content-type": "application/json" }

const config: EmulatorConfig = {
  tenants: [
    {
      name: "acme",
      id: "11111111-1111-4111-8111-111111111111",
      dataCores: [
        {
          name: "orders",
          description: "all orders",
          flowTypes: [
            {
              name: "order.0",
              eventTypes: [{ name: "order.created.0" }, { name: "order.paid.0" }, { name: "order.shipped.0" }]
            },
            { name: "other.0", eventTypes: [{ name: "other.created.0", description: "unrelated" }] }
          ]
        }
      ]
    },
    { name: "bigcorp", dedicated: { domain: "bigcorp.flowcore.example" }, dataCores: [] }
  ],
  bearerTokens: ["token-1"]
}

const withConfig = (extra: EmulatorOptions = {}): EmulatorOptions => ({ config, ...extra })

interface Response {
  readonly status: number
  readonly text: string
  readonly contentType: string | null
  readonly body: unknown
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const request = (url: string, init: RequestInit = {}): Effect.Effect<Response> =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    const text = await response.text()
    return { status: response.status, text, contentType: response.headers.get("content-type"), body: parse(text) }
  })

const get = (url: string, headers: Record<string, string> = AUTH) => request(url, { headers })
const post = (url: string, body: unknown, headers: Record<string, string> = INGEST_AUTH) =>
  request(url, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) })

const ids = (emu: Emulator) => emu.ids("acme", "orders", "order.0")
const eventTypeId = (emu: Emulator, name: string) => ids(emu).eventTypeIds[name] as string

const eventsUrl = (emu: Emulator, eventTypeIds: ReadonlyArray<string>, params: Record<string, string | number>) => {
  const query = new URLSearchParams()
  for (const id of eventTypeIds) query.append("eventTypeId", id)
  for (const [k, v] of Object.entries(params)) query.set(k, String(v))
  return `${emu.url}/api/v1/events?${query}`
}

interface EventsPage {
  readonly events: ReadonlyArray<{ readonly eventId: string; readonly payload: Record<string, unknown> }>
  readonly nextCursor?: string
}

const ingestAt = (emu: Emulator, eventType: string, at: Date, payload: Record<string, unknown> = {}) =>
  emu.ingest({ tenant: "acme", dataCore: "orders", flowType: "order.0", eventType, payload, eventTime: at })

const HOUR = Date.UTC(2024, 2, 1, 10)
const BUCKET = TimeBucket.fromDate(HOUR)

/** Opens a WebSocket; resolves once open, rejects with the HTTP status when the upgrade is refused. */
const openSocket = (url: string, options: WebSocket.ClientOptions = {}) =>
  Effect.callback<WebSocket, { readonly status?: number; readonly body?: string; readonly error?: string }>(
    (resume) => {
      const ws = new WebSocket(url, options)
      ws.once("open", () => resume(Effect.succeed(ws)))
      ws.once("unexpected-response", (_req, res) => {
        let body = ""
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString()
        })
        res.on("end", () => resume(Effect.fail({ status: res.statusCode ?? 0, body })))
      })
      ws.once("error", (error) => resume(Effect.fail({ error: error.message })))
    }
  )

const closeSocket = (ws: WebSocket) =>
  Effect.callback<void>((resume) => {
    if (ws.readyState === WebSocket.CLOSED) return resume(Effect.void)
    ws.once("close", () => resume(Effect.void))
    ws.terminate()
  })

/** Sends the subscription, then a ping: the pong proves the server handled the subscription before it. */
const subscribe = (ws: WebSocket, message: unknown) =>
  Effect.callback<void>((resume) => {
    ws.send(typeof message === "string" ? message : JSON.stringify(message))
    ws.once("pong", () => resume(Effect.void))
    ws.ping()
  })

/** Collects text frames; `next()` waits for the following one. */
const frames = (ws: WebSocket) => {
  const queue: Array<string> = []
  const waiting: Array<(frame: string) => void> = []
  ws.on("message", (data) => {
    const text = data.toString()
    const waiter = waiting.shift()
    if (waiter !== undefined) waiter(text)
    else queue.push(text)
  })
  return {
    next: () =>
      Effect.callback<string>((resume) => {
        const queued = queue.shift()
        if (queued !== undefined) resume(Effect.succeed(queued))
        else waiting.push((frame) => resume(Effect.succeed(frame)))
      }).pipe(Effect.timeout("5 seconds"), Effect.orDie)
  }
}

const closeCode = (ws: WebSocket) =>
  Effect.callback<number>((resume) => {
    ws.once("close", (code) => resume(Effect.succeed(code)))
  }).pipe(Effect.timeout("5 seconds"), Effect.orDie)

const wsUrl = (emu: Emulator, query: string) => `${emu.url.replace("http", "ws")}/notifications?${query}`
const WS_AUTH = `api_key=${KEY}&api_key_id=emulator`

describe("emulator: auth", () => {
  it.live("the data API answers 401 JSON to a missing or wrong credential and accepts ApiKey and Bearer", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const url = `${emu.url}/api/v1/data-cores?tenant=acme&name=orders`
      for (const headers of [
        {},
        { authorization: "ApiKey emulator:fc_emulator_wrong" },
        { authorization: `ApiKey other:${KEY}` },
        { authorization: KEY },
        { authorization: "Bearer token-2" }
      ]) {
        const response = yield* get(url, headers)
        expect(response.status).toBe(401)
        expect(response.contentType).toBe("application/json")
        expect(response.body).toEqual({ message: "Unauthorized", statusCode: 401 })
      }
      expect((yield* get(url)).status).toBe(200)
      expect((yield* get(url, { authorization: "Bearer token-1" })).status).toBe(200)
    })
  )

  it.live("ingestion takes the raw key (or the ApiKey form) and nothing else", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const url = `${emu.url}/event/acme/orders/order.0/order.created.0`
      for (const authorization of ["fc_emulator_wrong", "Bearer token-1", `ApiKey other:${KEY}`]) {
        const response = yield* post(url, { a: 1 }, { authorization, "content-type": "application/json" })
        expect(response.status).toBe(401)
        expect(response.body).toEqual({ message: "Unauthorized", statusCode: 401 })
      }
      expect((yield* post(url, { a: 1 }, { "content-type": "application/json" })).status).toBe(401)
      expect((yield* post(url, { a: 1 })).status).toBe(200)
      expect((yield* post(url, { a: 2 }, { ...AUTH, "content-type": "application/json" })).status).toBe(200)
    })
  )

  it.live("the WebSocket rejects a wrong key with a 401 upgrade response and accepts key or token", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      for (const query of [
        "api_key=fc_emulator_wrong&api_key_id=emulator",
        `api_key=${KEY}&api_key_id=someone`,
        "token=token-2",
        ""
      ]) {
        const refused = yield* Effect.flip(openSocket(wsUrl(emu, query)))
        expect(refused.status).toBe(401)
        expect(parse(refused.body ?? "")).toEqual({ message: "Unauthorized", statusCode: 401 })
      }
      yield* closeSocket(yield* openSocket(wsUrl(emu, WS_AUTH)))
      yield* closeSocket(yield* openSocket(wsUrl(emu, "token=token-1")))
    })
  )

  it.live("open mode checks nothing", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig({ open: true }))
      expect((yield* get(`${emu.url}/api/v1/data-cores?tenant=acme&name=orders`, {})).status).toBe(200)
      expect((yield* post(`${emu.url}/event/acme/orders/order.0/order.created.0`, { a: 1 }, {})).status).toBe(200)
      yield* closeSocket(yield* openSocket(wsUrl(emu, "")))
    })
  )
})

describe("emulator: resource routes", () => {
  it.live("tenant instance, name-to-id, data cores, flow types and event types have the SDK's shapes", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const { tenantId, dataCoreId, flowTypeId, eventTypeIds } = ids(emu)
      expect(tenantId).toBe("11111111-1111-4111-8111-111111111111")
      expect((yield* get(`${emu.url}/api/v1/tenants/by-name/acme/instance`)).body).toEqual({
        isDedicated: false,
        instance: null
      })
      expect((yield* get(`${emu.url}/api/v1/tenants/by-id/${tenantId}/instance`)).body).toEqual({
        isDedicated: false,
        instance: null
      })
      expect((yield* get(`${emu.url}/api/v1/tenants/by-name/bigcorp/instance`)).body).toEqual({
        isDedicated: true,
        instance: { status: "active", domain: "bigcorp.flowcore.example" }
      })
      const missingTenant = yield* get(`${emu.url}/api/v1/tenants/by-name/nobody/instance`)
      expect(missingTenant.status).toBe(404)
      expect(missingTenant.body).toMatchObject({ statusCode: 404 })
      expect((yield* get(`${emu.url}/api/v1/tenants/translate-name-to-id/acme`)).body).toEqual({
        id: tenantId,
        name: "acme"
      })
      expect((yield* get(`${emu.url}/api/v1/tenants/translate-name-to-id/nobody`)).status).toBe(404)

      const dataCore = {
        id: dataCoreId,
        tenantId,
        tenant: "acme",
        name: "orders",
        description: "all orders",
        accessControl: "private",
        deleteProtection: false,
        isDeleting: false,
        isFlowcoreManaged: false
      }
      expect((yield* get(`${emu.url}/api/v1/data-cores?tenant=acme&name=orders`)).body).toEqual([dataCore])
      expect((yield* get(`${emu.url}/api/v1/data-cores?tenantId=${tenantId}&name=orders`)).body).toEqual([dataCore])
      expect((yield* get(`${emu.url}/api/v1/data-cores/${dataCoreId}`)).body).toEqual(dataCore)
      expect((yield* get(`${emu.url}/api/v1/data-cores?tenant=acme&name=nope`)).body).toEqual([])
      expect((yield* get(`${emu.url}/api/v1/data-cores?tenant=nobody&name=orders`)).body).toEqual([])
      const missingCore = yield* get(`${emu.url}/api/v1/data-cores/00000000-0000-4000-8000-000000000000`)
      expect(missingCore.status).toBe(404)
      expect(missingCore.body).toEqual({ message: expect.any(String), statusCode: 404 })
      expect((yield* get(`${emu.url}/api/v1/data-cores`)).status).toBe(400)

      const flowType = { id: flowTypeId, tenantId, dataCoreId, name: "order.0", description: "", isDeleting: false }
      expect((yield* get(`${emu.url}/api/v1/flow-types?dataCoreId=${dataCoreId}&name=order.0`)).body).toEqual([
        flowType
      ])
      expect((yield* get(`${emu.url}/api/v1/flow-types/${flowTypeId}`)).body).toEqual(flowType)
      expect((yield* get(`${emu.url}/api/v1/flow-types?dataCoreId=${dataCoreId}&name=nope`)).body).toEqual([])
      expect((yield* get(`${emu.url}/api/v1/flow-types/nope`)).status).toBe(404)

      const eventTypes = (yield* get(`${emu.url}/api/v1/event-types?flowTypeId=${flowTypeId}`)).body as Array<unknown>
      expect(eventTypes).toEqual(
        ["order.created.0", "order.paid.0", "order.shipped.0"].map((name) => ({
          id: eventTypeIds[name],
          tenantId,
          dataCoreId,
          flowTypeId,
          name,
          description: "",
          isTruncating: false,
          isDeleting: false,
          createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
          updatedAt: null
        }))
      )
      const paid = eventTypeIds["order.paid.0"] as string
      expect((yield* get(`${emu.url}/api/v1/event-types/${paid}`)).body).toEqual(eventTypes[1])
      expect((yield* get(`${emu.url}/api/v1/event-types?flowTypeId=${flowTypeId}&name=order.paid.0`)).body).toEqual([
        eventTypes[1]
      ])
      expect((yield* get(`${emu.url}/api/v1/event-types/nope`)).status).toBe(404)
      expect((yield* get(`${emu.url}/api/v1/nothing-here`)).status).toBe(404)
    })
  )

  it.live("ingestion auto-creates unknown data cores, flow types and event types; with autoCreate off it is 404", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const created = yield* post(`${emu.url}/event/acme/fresh/fresh.0/fresh.created.0`, { n: 1 })
      expect(created.status).toBe(200)
      const fresh = emu.ids("acme", "fresh", "fresh.0")
      expect(Object.keys(fresh.eventTypeIds)).toEqual(["fresh.created.0"])
      // the data core segment may also be the id
      expect((yield* post(`${emu.url}/event/acme/${fresh.dataCoreId}/fresh.0/fresh.created.0`, { n: 2 })).status).toBe(
        200
      )
      expect(Object.keys(emu.ids("acme", "orders", "order.0").eventTypeIds)).toHaveLength(3)

      const strict = yield* make(withConfig({ autoCreate: false }))
      const refused = yield* post(`${strict.url}/event/acme/orders/order.0/order.unknown.0`, { n: 1 })
      expect(refused.status).toBe(404)
      expect((refused.body as { message: string }).message).toContain("order.unknown.0")
      expect(() =>
        strict.ingest({ tenant: "acme", dataCore: "nope", flowType: "x", eventType: "y", payload: {} })
      ).toThrow(EmulatorError)
      expect(() => strict.ids("acme", "nope", "x")).toThrow(/data core "nope"/)
    })
  )

  it.live("payloads must be JSON objects and batches arrays of objects", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const single = `${emu.url}/event/acme/orders/order.0/order.created.0`
      const batch = `${emu.url}/events/acme/orders/order.0/order.created.0`
      for (const body of [[1], "7", "null", "not json"]) expect((yield* post(single, body)).status).toBe(400)
      for (const body of [{ a: 1 }, [{ a: 1 }, 2], "nope"]) expect((yield* post(batch, body)).status).toBe(400)
      const badMeta = yield* post(single, { a: 1 }, { ...INGEST_AUTH, "x-flowcore-metadata-json": btoa("[1]") })
      expect(badMeta.status).toBe(400)
      const badTime = yield* post(single, { a: 1 }, { ...INGEST_AUTH, "x-flowcore-event-time": "yesterday" })
      expect(badTime.status).toBe(400)
      expect((badTime.body as { message: string }).message).toContain("x-flowcore-event-time")
      const ok = yield* post(batch, [{ a: 1 }, { a: 2 }])
      expect(ok.body).toEqual({ eventIds: [expect.any(String), expect.any(String)], success: true })
      expect(() =>
        emu.ingest({
          tenant: "acme",
          dataCore: "orders",
          flowType: "order.0",
          eventType: "order.created.0",
          payload: [] as unknown as Record<string, unknown>
        })
      ).toThrow(/payload must be a JSON object/)
    })
  )

  it.live("ingested events carry the nine fields in order, metadata and times from the headers", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const created = eventTypeId(emu, "order.created.0")
      const eventTime = "2024-03-01T10:15:00.000Z"
      const validTime = "2024-03-01T11:00:00.000Z"
      const response = yield* post(
        `${emu.url}/event/acme/orders/order.0/order.created.0`,
        { total: 12 },
        {
          ...INGEST_AUTH,
          "x-flowcore-metadata-json": btoa(JSON.stringify({ source: "café" })),
          "x-flowcore-event-time": eventTime,
          "x-flowcore-valid-time": validTime
        }
      )
      const { eventId } = response.body as { eventId: string }
      expect(TimeUuid.fromString(eventId).getDate().toISOString()).toBe(eventTime)
      const page = yield* get(eventsUrl(emu, [created], { timeBucket: "20240301100000" }))
      const [event] = (page.body as EventsPage).events
      expect(Object.keys(event ?? {})).toEqual([
        "eventId",
        "timeBucket",
        "tenant",
        "dataCoreId",
        "flowType",
        "eventType",
        "metadata",
        "payload",
        "validTime"
      ])
      expect(event).toEqual({
        eventId,
        timeBucket: "20240301100000",
        tenant: "acme",
        dataCoreId: ids(emu).dataCoreId,
        flowType: "order.0",
        eventType: "order.created.0",
        metadata: { source: "café" },
        payload: { total: 12 },
        validTime
      })
    })
  )

  it.live("the pump pulse answers {status} and keeps the bodies", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const pulse = { pathwayId: "p1", flowType: "order.0", timeBucket: "20240301100000", eventId: null, isLive: true }
      const response = yield* post(`${emu.url}/api/v1/pump-pulse`, pulse, {
        ...AUTH,
        "content-type": "application/json"
      })
      expect(response.body).toEqual({ status: "ok" })
      expect(emu.stats.pulses).toEqual([pulse])
      expect((yield* post(`${emu.url}/api/v1/pump-pulse`, pulse, { "content-type": "application/json" })).status).toBe(
        401
      )
    })
  )
})

describe("emulator: time buckets", () => {
  it.live("pages the union of the event types' buckets with a numeric cursor that is never 0 and then omitted", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const created = eventTypeId(emu, "order.created.0")
      const paid = eventTypeId(emu, "order.paid.0")
      // out of order on purpose: the bucket list must still come back ascending
      for (const h of [4, 0, 2]) ingestAt(emu, "order.created.0", new Date(HOUR + h * 3_600_000 + 60_000))
      for (const h of [1, 2, 3]) ingestAt(emu, "order.paid.0", new Date(HOUR + h * 3_600_000 + 60_000))
      const expected = [0, 1, 2, 3, 4].map((h) => TimeBucket.fromDate(HOUR + h * 3_600_000))
      const base = `${emu.url}/api/v1/time-buckets?eventTypeId=${created}&eventTypeId=${paid}&pageSize=2`
      const seen: Array<string> = []
      const cursors: Array<unknown> = []
      let url = base
      for (let page = 0; page < 10; page++) {
        const body = (yield* get(url)).body as { timeBuckets: Array<string>; nextCursor?: number }
        seen.push(...body.timeBuckets)
        if (!("nextCursor" in body)) break
        cursors.push(body.nextCursor)
        url = `${base}&cursor=${body.nextCursor}`
      }
      expect(seen).toEqual(expected)
      expect(cursors).toEqual([2, 4])

      const all = (yield* get(`${emu.url}/api/v1/time-buckets?eventTypeId=${created}&eventTypeId=${paid}`)).body
      expect(all).toEqual({ timeBuckets: expected })
      const desc = yield* get(`${emu.url}/api/v1/time-buckets?eventTypeId=${created}&order=desc`)
      expect(desc.body).toEqual({ timeBuckets: [expected[4], expected[2], expected[0]] })
      const window = yield* get(
        `${emu.url}/api/v1/time-buckets?eventTypeId=${paid}&fromTimeBucket=${expected[2]}&toTimeBucket=${expected[3]}`
      )
      expect(window.body).toEqual({ timeBuckets: [expected[2], expected[3]] })
      for (const bad of [
        "",
        `eventTypeId=${paid}&pageSize=0`,
        `eventTypeId=${paid}&cursor=-1`,
        `eventTypeId=${paid}&fromTimeBucket=2024`
      ]) {
        const response = yield* get(`${emu.url}/api/v1/time-buckets?${bad}`)
        expect(response.status).toBe(400)
        expect(response.body).toMatchObject({ statusCode: 400, message: expect.any(String) })
      }
    })
  )
})

describe("emulator: events", () => {
  it.live("pages every event of three event types exactly once, in time order, across cursor pages", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const names = ["order.created.0", "order.paid.0", "order.shipped.0"]
      const inputs = Array.from({ length: 300 }, (_, i) => ({
        tenant: "acme",
        dataCore: "orders",
        flowType: "order.0",
        eventType: names[i % 3] as string,
        payload: { i },
        eventTime: new Date(HOUR + Math.floor(Math.random() * 3_600_000))
      }))
      const minted = emu.ingestMany(inputs)
      // one more in the next hour must not leak into this bucket
      ingestAt(emu, "order.created.0", new Date(HOUR + 3_600_000))
      const expected = [...minted].sort(compare)
      const typeIds = names.map((n) => eventTypeId(emu, n))
      const seen: Array<string> = []
      let cursor: string | undefined
      const pageSizes = [7, 50, 1, 33]
      for (let page = 0; page < 1000; page++) {
        const params: Record<string, string | number> = { timeBucket: BUCKET, pageSize: pageSizes[page % 4] as number }
        if (cursor !== undefined) params.cursor = cursor
        const body = (yield* get(eventsUrl(emu, typeIds, params))).body as EventsPage
        seen.push(...body.events.map((e) => e.eventId))
        if (!("nextCursor" in body)) break
        cursor = body.nextCursor
      }
      expect(seen).toHaveLength(300)
      expect(new Set(seen).size).toBe(300)
      expect(seen).toEqual(expected)
      const single = (yield* get(eventsUrl(emu, [typeIds[1] as string], { timeBucket: BUCKET }))).body as EventsPage
      expect(single.events).toHaveLength(100)
      expect(single.events.every((e) => (e.payload.i as number) % 3 === 1)).toBe(true)
      expect("nextCursor" in single).toBe(false)
    })
  )

  it.live("afterEventId is exclusive, fromEventId and toEventId inclusive, and bounds need not be real ids", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const types = ["order.created.0", "order.paid.0"].map((n) => eventTypeId(emu, n))
      const at = (i: number) => new Date(HOUR + 60_000 + i * 1_000)
      const e = Array.from({ length: 10 }, (_, i) => ingestAt(emu, i % 2 ? "order.paid.0" : "order.created.0", at(i)))
      const fetchIds = (params: Record<string, string | number>) =>
        get(eventsUrl(emu, types, { timeBucket: BUCKET, ...params })).pipe(
          Effect.map((r) => (r.body as EventsPage).events.map((ev) => ev.eventId))
        )
      expect(yield* fetchIds({})).toEqual(e)
      expect(yield* fetchIds({ afterEventId: e[3] as string })).toEqual(e.slice(4))
      expect(yield* fetchIds({ fromEventId: e[3] as string })).toEqual(e.slice(3))
      expect(yield* fetchIds({ afterEventId: e[3] as string, toEventId: e[6] as string })).toEqual(e.slice(4, 7))
      // fromEventId wins over afterEventId
      expect(yield* fetchIds({ fromEventId: e[3] as string, afterEventId: e[5] as string })).toEqual(e.slice(3))
      const between = (i: number) => TimeUuid.fromDate(new Date(at(i).getTime() + 500)).toString()
      expect(yield* fetchIds({ afterEventId: between(2) })).toEqual(e.slice(3))
      expect(yield* fetchIds({ fromEventId: between(2) })).toEqual(e.slice(3))
      expect(yield* fetchIds({ toEventId: between(6) })).toEqual(e.slice(0, 7))
      expect(yield* fetchIds({ afterEventId: between(9) })).toEqual([])
      // upper-case ids are the same ids
      expect(yield* fetchIds({ afterEventId: (e[3] as string).toUpperCase() })).toEqual(e.slice(4))
      // a cursor keeps honouring toEventId
      const first = (yield* get(eventsUrl(emu, types, { timeBucket: BUCKET, pageSize: 2, toEventId: e[4] as string })))
        .body as EventsPage
      const rest = (yield* get(
        eventsUrl(emu, types, { timeBucket: BUCKET, cursor: first.nextCursor as string, toEventId: e[4] as string })
      )).body as EventsPage
      expect([...first.events, ...rest.events].map((ev) => ev.eventId)).toEqual(e.slice(0, 5))
      expect("nextCursor" in rest).toBe(false)
    })
  )

  it.live("events ingested out of order (event time in the past) come back sorted", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const created = eventTypeId(emu, "order.created.0")
      const minutes = [30, 10, 50, 20, 40, 5]
      const byMinute = new Map(minutes.map((m) => [m, ingestAt(emu, "order.created.0", new Date(HOUR + m * 60_000))]))
      const earlier = ingestAt(emu, "order.created.0", new Date(HOUR - 30 * 60_000))
      const body = (yield* get(eventsUrl(emu, [created], { timeBucket: BUCKET }))).body as EventsPage
      expect(body.events.map((ev) => ev.eventId)).toEqual(
        [...minutes].sort((a, b) => a - b).map((m) => byMinute.get(m))
      )
      const buckets = (yield* get(`${emu.url}/api/v1/time-buckets?eventTypeId=${created}`)).body
      expect(buckets).toEqual({ timeBuckets: [TimeBucket.fromDate(HOUR - 3_600_000), BUCKET] })
      const previous = (yield* get(eventsUrl(emu, [created], { timeBucket: TimeBucket.fromDate(HOUR - 3_600_000) })))
        .body as EventsPage
      expect(previous.events.map((ev) => ev.eventId)).toEqual([earlier])
    })
  )

  it.live("rejects bad queries with 400 and a message naming the parameter", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const created = eventTypeId(emu, "order.created.0")
      const cases: Array<[string, string]> = [
        [`eventTypeId=${created}`, "timeBucket"],
        [`timeBucket=${BUCKET}`, "eventTypeId"],
        [`eventTypeId=${created}&timeBucket=2024030110`, "timeBucket"],
        [`eventTypeId=${created}&timeBucket=20240301103000`, "timeBucket"],
        [`eventTypeId=${created}&timeBucket=${BUCKET}&pageSize=0`, "pageSize"],
        [`eventTypeId=${created}&timeBucket=${BUCKET}&pageSize=10001`, "pageSize"],
        [`eventTypeId=${created}&timeBucket=${BUCKET}&pageSize=ten`, "pageSize"],
        [`eventTypeId=${created}&timeBucket=${BUCKET}&afterEventId=not-a-uuid`, "afterEventId"],
        [`eventTypeId=${created}&timeBucket=${BUCKET}&toEventId=0c9a3a7e-7a44-4c51-9c37-3c3a8e7b1f00`, "toEventId"],
        [`eventTypeId=${created}&timeBucket=${BUCKET}&cursor=garbage`, "cursor"]
      ]
      for (const [query, field] of cases) {
        const response = yield* get(`${emu.url}/api/v1/events?${query}`)
        expect(response.status, query).toBe(400)
        expect(response.contentType).toBe("application/json")
        expect((response.body as { message: string }).message, query).toContain(field)
      }
      expect((yield* get(eventsUrl(emu, [created], { timeBucket: BUCKET, pageSize: 10_000 }))).status).toBe(200)
    })
  )

  it.live("order=desc gives a bucket's newest events first, pageSize of them, without a cursor or filters", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const ingested = Array.from({ length: 5 }, (_, i) =>
        ingestAt(emu, i % 2 === 0 ? "order.created.0" : "order.paid.0", new Date(HOUR + i * 1000), { i })
      )
      const both = [eventTypeId(emu, "order.created.0"), eventTypeId(emu, "order.paid.0")]
      const newest = yield* get(eventsUrl(emu, both, { timeBucket: BUCKET, order: "desc", pageSize: 3 }))
      expect(newest.status).toBe(200)
      expect(newest.body).toEqual({
        events: [4, 3, 2].map((i) => expect.objectContaining({ eventId: ingested[i], payload: { i } }))
      })
      const all = (yield* get(eventsUrl(emu, both, { timeBucket: BUCKET, order: "desc" }))).body as EventsPage
      expect(all.events.map((event) => event.eventId)).toEqual([...ingested].reverse())
      for (const field of ["cursor", "afterEventId"]) {
        const refused = yield* get(
          eventsUrl(emu, both, {
            timeBucket: BUCKET,
            order: "desc",
            [field]: field === "cursor" ? "x" : (ingested[0] as string)
          })
        )
        expect(refused.status).toBe(400)
        expect((refused.body as { message: string }).message).toContain(field)
      }
    })
  )

  it.live("seeds 50,000 events with ingestMany and serves them in pages of 1000", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const names = ["order.created.0", "order.paid.0", "order.shipped.0"]
      const inputs = Array.from({ length: 50_000 }, (_, i) => ({
        tenant: "acme",
        dataCore: "orders",
        flowType: "order.0",
        eventType: names[i % 3] as string,
        payload: { i },
        eventTime: new Date(HOUR + Math.floor((i / 50_000) * 3_600_000))
      }))
      const started = performance.now()
      const minted = emu.ingestMany(inputs)
      const seeded = performance.now() - started
      expect(minted).toHaveLength(50_000)
      const typeIds = names.map((n) => eventTypeId(emu, n))
      let cursor: string | undefined
      let count = 0
      let pages = 0
      let last: string | undefined
      let ordered = true
      const pageStarted = performance.now()
      do {
        const params: Record<string, string | number> = { timeBucket: BUCKET, pageSize: 1000 }
        if (cursor !== undefined) params.cursor = cursor
        const body = (yield* get(eventsUrl(emu, typeIds, params))).body as EventsPage
        for (const event of body.events) {
          if (last !== undefined && compare(last, event.eventId) !== -1) ordered = false
          last = event.eventId
        }
        count += body.events.length
        pages++
        cursor = body.nextCursor
      } while (cursor !== undefined)
      const perPage = (performance.now() - pageStarted) / pages
      console.log(
        `emulator: ingestMany(50,000) ${seeded.toFixed(0)} ms; ${pages} pages of 1000 at ${perPage.toFixed(1)} ms each`
      )
      expect(count).toBe(50_000)
      expect(ordered).toBe(true)
      expect(emu.stats.events).toBe(50_000)
    })
  )
})

describe("emulator: faults", () => {
  it.live("errorRate 1 answers every data-API request with errorStatus, ingestion and admin are untouched", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig({ faults: { errorRate: 1 } }))
      for (let i = 0; i < 5; i++) {
        const response = yield* get(`${emu.url}/api/v1/data-cores?tenant=acme&name=orders`)
        expect(response.status).toBe(500)
        expect(response.body).toEqual({ message: expect.any(String), statusCode: 500 })
      }
      emu.setFaults({ errorStatus: 503 })
      expect((yield* get(`${emu.url}/api/v1/tenants/by-name/acme/instance`)).status).toBe(503)
      expect((yield* post(`${emu.url}/event/acme/orders/order.0/order.created.0`, { a: 1 })).status).toBe(200)
      expect((yield* get(`${emu.url}/__emulator/health`, {})).status).toBe(200)
      emu.setFaults({ errorRate: 0 })
      expect((yield* get(`${emu.url}/api/v1/tenants/by-name/acme/instance`)).status).toBe(200)
    })
  )

  it.live("malformedResponses N makes the next N responses invalid JSON with status 200", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      emu.setFaults({ malformedResponses: 2 })
      const url = `${emu.url}/api/v1/data-cores?tenant=acme&name=orders`
      for (let i = 0; i < 2; i++) {
        const response = yield* get(url)
        expect(response.status).toBe(200)
        expect(() => JSON.parse(response.text)).toThrow()
      }
      expect(emu.faults.malformedResponses).toBe(0)
      const healthy = yield* get(url)
      expect(healthy.body).toEqual([expect.objectContaining({ name: "orders" })])
    })
  )

  it.live("latencyMs delays data-API responses: a client that gives up sooner gets nothing", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig({ faults: { latencyMs: 400 } }))
      const url = `${emu.url}/api/v1/tenants/by-name/acme/instance`
      const impatient = yield* Effect.promise(() =>
        fetch(url, { headers: AUTH, signal: AbortSignal.timeout(50) }).then(
          () => "answered",
          (error: Error) => error.name
        )
      )
      expect(impatient).toBe("TimeoutError")
      expect((yield* get(url)).status).toBe(200)
      // ingestion is not delayed
      const ingest = yield* Effect.promise(() =>
        fetch(`${emu.url}/event/acme/orders/order.0/order.created.0`, {
          method: "POST",
          headers: INGEST_AUTH,
          body: "{}",
          signal: AbortSignal.timeout(5_000)
        }).then((r) => r.status)
      )
      expect(ingest).toBe(200)
    })
  )

  it.live("the admin endpoints toggle faults at runtime and reject bad input with a 400 naming the field", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const admin = `${emu.url}/__emulator`
      expect((yield* get(`${admin}/health`, {})).body).toEqual({ status: "ok" })
      expect((yield* get(`${admin}/faults`, {})).body).toEqual({
        errorRate: 0,
        errorStatus: 500,
        latencyMs: 0,
        malformedResponses: 0,
        wsHang: false,
        wsDropAfterMs: 0
      })
      const data = `${emu.url}/api/v1/tenants/by-name/acme/instance`
      const on = yield* post(`${admin}/faults`, { errorRate: 1, errorStatus: 502 }, {})
      expect(on.body).toMatchObject({ errorRate: 1, errorStatus: 502 })
      expect((yield* get(data)).status).toBe(502)
      expect((yield* post(`${admin}/faults`, { errorRate: 0 }, {})).status).toBe(200)
      expect((yield* get(data)).status).toBe(200)
      for (const [body, field] of [
        [{ errorRate: 2 }, "errorRate"],
        [{ errorRate: "often" }, "errorRate"],
        [{ latencyMs: -5 }, "latencyMs"],
        [{ wsHang: "yes" }, "wsHang"],
        [{ errorStatus: 200 }, "errorStatus"],
        [{ errRate: 1 }, "errRate"]
      ] as const) {
        const response = yield* post(`${admin}/faults`, body, {})
        expect(response.status).toBe(400)
        expect((response.body as { message: string }).message).toContain(field)
      }
      expect((yield* post(`${admin}/faults`, "{not json", {})).status).toBe(400)
      expect(emu.faults.errorRate).toBe(0)
      expect(() => emu.setFaults({ errorRate: -1 })).toThrow(/errorRate/)
      const stats = (yield* get(`${admin}/stats`, {})).body as { requests: number; byPath: Record<string, number> }
      expect(stats.byPath["/api/v1/tenants/by-name/acme/instance"]).toBe(2)
      expect(stats.requests).toBe(2)
      expect(emu.stats.byPath).toEqual(stats.byPath)
    })
  )
})

describe("emulator: notifications", () => {
  it.live("sends a notification frame to matching subscriptions only", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const { tenantId, dataCoreId, flowTypeId, eventTypeIds } = ids(emu)
      const other = emu.ids("acme", "orders", "other.0")
      const all = yield* openSocket(wsUrl(emu, WS_AUTH))
      const onlyCreated = yield* openSocket(wsUrl(emu, WS_AUTH))
      const otherFlow = yield* openSocket(wsUrl(emu, WS_AUTH))
      const allFrames = frames(all)
      const createdFrames = frames(onlyCreated)
      const otherFrames = frames(otherFlow)
      yield* subscribe(all, { tenant: "acme", dataCoreId, flowTypeId })
      yield* subscribe(onlyCreated, {
        tenant: "acme",
        dataCoreId,
        flowTypeId,
        eventTypeId: eventTypeIds["order.created.0"]
      })
      yield* subscribe(otherFlow, { tenant: "acme", dataCoreId, flowTypeId: other.flowTypeId })

      const ingest = (flowType: string, eventType: string) =>
        emu.ingest({
          tenant: "acme",
          dataCore: "orders",
          flowType,
          eventType,
          payload: {},
          validTime: "2024-01-01T00:00:00Z"
        })
      const otherId = ingest("other.0", "other.created.0")
      const paidId = ingest("order.0", "order.paid.0")
      const createdId = ingest("order.0", "order.created.0")

      const frame = (eventId: string, eventType: string, flowType = "order.0") => ({
        pattern: "stored.event.notify.0",
        data: {
          tenantId,
          eventId,
          dataCore: dataCoreId,
          aggregator: flowType,
          eventType,
          validTime: "2024-01-01T00:00:00Z"
        }
      })
      const decode = (text: string) => {
        const outer = JSON.parse(text) as { message: string }
        expect(Object.keys(outer)).toEqual(["message"])
        expect(typeof outer.message).toBe("string")
        return JSON.parse(outer.message) as unknown
      }
      expect(decode(yield* allFrames.next())).toEqual(frame(paidId, "order.paid.0"))
      expect(decode(yield* allFrames.next())).toEqual(frame(createdId, "order.created.0"))
      expect(decode(yield* createdFrames.next())).toEqual(frame(createdId, "order.created.0"))
      expect(decode(yield* otherFrames.next())).toEqual(frame(otherId, "other.created.0", "other.0"))
      // a final event proves nothing else was queued in between
      const lastId = ingest("order.0", "order.created.0")
      expect(decode(yield* createdFrames.next())).toEqual(frame(lastId, "order.created.0"))
      expect(decode(yield* allFrames.next())).toEqual(frame(lastId, "order.created.0"))
      expect(emu.stats.wsConnections).toBe(3)
      for (const ws of [all, onlyCreated, otherFlow]) yield* closeSocket(ws)
    })
  )

  it.live("answers a malformed subscription with a validation frame", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const ws = yield* openSocket(wsUrl(emu, WS_AUTH))
      const received = frames(ws)
      ws.send("not json")
      const first = JSON.parse(yield* received.next())
      expect(first).toMatchObject({ type: "validation", summary: expect.any(String), message: expect.any(String) })
      expect(first.found).toBe("not json")
      ws.send(JSON.stringify({ tenant: "acme", dataCoreId: ids(emu).dataCoreId }))
      const second = JSON.parse(yield* received.next())
      expect(second.type).toBe("validation")
      expect(second.message).toContain("flowTypeId")
      expect(second.errors).toEqual([{ path: "flowTypeId", message: expect.stringContaining("Missing") }])
      yield* closeSocket(ws)
    })
  )

  it.live("wsHang accepts TCP but never upgrades; switching it off lets new connections in", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig({ faults: { wsHang: true } }))
      const hung = yield* Effect.flip(openSocket(wsUrl(emu, WS_AUTH), { handshakeTimeout: 300 }))
      expect(hung.error).toMatch(/handshake has timed out/)
      expect(emu.stats.wsConnections).toBe(0)
      emu.setFaults({ wsHang: false })
      const ws = yield* openSocket(wsUrl(emu, WS_AUTH), { handshakeTimeout: 2_000 })
      expect(emu.stats.wsConnections).toBe(1)
      yield* closeSocket(ws)
    })
  )

  it.live("dropWebSockets, the admin drop and wsDropAfterMs destroy sockets abruptly (1006)", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      const a = yield* openSocket(wsUrl(emu, WS_AUTH))
      const aClosed = closeCode(a)
      emu.dropWebSockets()
      expect(yield* aClosed).toBe(1006)

      const b = yield* openSocket(wsUrl(emu, WS_AUTH))
      const bClosed = closeCode(b)
      expect((yield* post(`${emu.url}/__emulator/ws/drop`, {}, {})).body).toEqual({ dropped: 1 })
      expect(yield* bClosed).toBe(1006)

      emu.setFaults({ wsDropAfterMs: 100 })
      const c = yield* openSocket(wsUrl(emu, WS_AUTH))
      expect(yield* closeCode(c)).toBe(1006)
      expect(emu.stats.wsConnectionsTotal).toBe(3)
    })
  )

  it.live("publishes each ingested event on NATS (requires nats-server on 127.0.0.1:4222)", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig({ nats: { servers: "nats://127.0.0.1:4222" } }))
      const { dataCoreId } = ids(emu)
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: "nats://127.0.0.1:4222" })),
        (c) => Effect.promise(() => c.close())
      )
      const subject = natsSubject(dataCoreId, "order.0", "order.paid.0")
      expect(subject).toBe(`stored.event.notify.0.${dataCoreId}.order.0.order.paid.0`)
      const sub = nc.subscribe(subject, { max: 1 })
      yield* Effect.promise(() => nc.flush())
      const received = Effect.promise(async () => {
        for await (const message of sub) return message.string()
        return undefined
      }).pipe(Effect.timeout("5 seconds"))
      const eventId = emu.ingest({
        tenant: "acme",
        dataCore: "orders",
        flowType: "order.0",
        eventType: "order.paid.0",
        payload: {}
      })
      const payload = JSON.parse((yield* received) ?? "null")
      expect(payload).toMatchObject({ pattern: "stored.event.notify.0", data: { eventId, eventType: "order.paid.0" } })
      expect(emu.stats.natsPublished).toBe(1)
    })
  )

  it.live("fails to start when NATS is unreachable, naming the server", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(make(withConfig({ nats: { servers: "nats://127.0.0.1:1" } })))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(make(withConfig({ nats: { servers: "nats://127.0.0.1:1" } })))
      expect(error).toBeInstanceOf(EmulatorError)
      expect(error.message).toContain("nats://127.0.0.1:1")
    })
  )
})

describe("emulator: persistence", () => {
  const scratch = () =>
    Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "emulator-test-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )

  const readAll = (emu: Emulator, tenant: string, dataCore: string, flowType: string) =>
    Effect.gen(function* () {
      const found = emu.ids(tenant, dataCore, flowType)
      const typeIds = Object.values(found.eventTypeIds)
      const buckets = (yield* get(
        `${emu.url}/api/v1/time-buckets?${typeIds.map((id) => `eventTypeId=${id}`).join("&")}`
      )).body as { timeBuckets: Array<string> }
      const events: Array<unknown> = []
      for (const bucket of buckets.timeBuckets) {
        events.push(...((yield* get(eventsUrl(emu, typeIds, { timeBucket: bucket }))).body as EventsPage).events)
      }
      return events
    })

  it.live("a restarted emulator has the same resources and events; a torn last line is dropped with a warning", () =>
    Effect.gen(function* () {
      const dir = yield* scratch()
      const persistPath = join(dir, "events.ndjson")
      const run = <A, E>(use: (emu: Emulator) => Effect.Effect<A, E>) =>
        Effect.scoped(Effect.flatMap(make(withConfig({ persistPath })), use))

      const first = yield* run((emu) =>
        Effect.gen(function* () {
          ingestAt(emu, "order.created.0", new Date(HOUR + 1_000), { n: 1 })
          ingestAt(emu, "order.paid.0", new Date(HOUR - 3_600_000), { n: 2 })
          yield* post(`${emu.url}/events/acme/newcore/new.0/new.made.0`, [{ n: 3 }, { n: 4 }], {
            ...INGEST_AUTH,
            "x-flowcore-metadata-json": btoa(JSON.stringify({ k: "v" }))
          })
          return {
            ids: ids(emu),
            fresh: emu.ids("acme", "newcore", "new.0"),
            events: yield* readAll(emu, "acme", "orders", "order.0"),
            freshEvents: yield* readAll(emu, "acme", "newcore", "new.0")
          }
        })
      )
      expect(first.events).toHaveLength(2)
      expect(first.freshEvents).toHaveLength(2)

      const second = yield* run((emu) =>
        Effect.gen(function* () {
          expect(ids(emu)).toEqual(first.ids)
          expect(emu.ids("acme", "newcore", "new.0")).toEqual(first.fresh)
          expect(yield* readAll(emu, "acme", "orders", "order.0")).toEqual(first.events)
          expect(yield* readAll(emu, "acme", "newcore", "new.0")).toEqual(first.freshEvents)
          return ingestAt(emu, "order.shipped.0", new Date(HOUR + 2_000))
        })
      )

      const torn = '{"k":"event","eventTypeId":"abc","event":{"eventId":"0'
      appendFileSync(persistPath, torn)
      const logs: Array<string> = []
      const capture = Logger.layer([Logger.make(({ message }) => logs.push((message as Array<unknown>).join(" ")))])
      const third = yield* run((emu) =>
        Effect.gen(function* () {
          const events = (yield* readAll(emu, "acme", "orders", "order.0")) as Array<{ eventId: string }>
          ingestAt(emu, "order.created.0", new Date(HOUR + 3_000))
          return events.map((e) => e.eventId)
        })
      ).pipe(Effect.provide(capture))
      expect(third).toContain(second)
      expect(third).toHaveLength(3)
      expect(logs.some((line) => line.includes(persistPath) && line.includes("incomplete"))).toBe(true)
      const text = readFileSync(persistPath, "utf8")
      expect(text.includes(torn)).toBe(false)
      expect(text.endsWith("\n")).toBe(true)

      const fourth = yield* run((emu) =>
        Effect.map(readAll(emu, "acme", "orders", "order.0"), (events) => ({ events, stored: emu.stats.events }))
      )
      expect(fourth.events).toHaveLength(4)
      expect(fourth.stored).toBe(6)
    })
  )

  it.live("a bad line other than the last is an error naming the file and the line", () =>
    Effect.gen(function* () {
      const dir = yield* scratch()
      const persistPath = join(dir, "events.ndjson")
      yield* Effect.scoped(
        Effect.flatMap(make(withConfig({ persistPath })), (emu) =>
          Effect.sync(() => ingestAt(emu, "order.created.0", new Date(HOUR)))
        )
      )
      const lines = readFileSync(persistPath, "utf8").split("\n")
      writeFileSync(persistPath, [lines[0], "{garbage", ...lines.slice(1)].join("\n"))
      const error = yield* Effect.flip(make(withConfig({ persistPath })))
      expect(error.message).toContain(persistPath)
      expect(error.message).toContain("line 2")

      writeFileSync(persistPath, [lines[0], '{"k":"event","eventTypeId":"x"}', ...lines.slice(1)].join("\n"))
      const shape = yield* Effect.flip(make(withConfig({ persistPath })))
      expect(shape.message).toContain("line 2")
      expect(shape.message).toContain("event")
    })
  )
})

describe("emulator: config files and CLI", () => {
  it.live("loadConfigFile validates and names the path and the field", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "emulator-config-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const good = join(dir, "good.json")
      writeFileSync(good, JSON.stringify(config))
      expect(yield* loadConfigFile(good)).toEqual(config)
      const bad = join(dir, "bad.json")
      writeFileSync(
        bad,
        JSON.stringify({ tenants: [{ name: "acme", dataCores: [{ name: "x", flowTypes: [{ name: "" }] }] }] })
      )
      const error = yield* Effect.flip(loadConfigFile(bad))
      expect(error).toBeInstanceOf(EmulatorError)
      expect(error.message).toContain(bad)
      expect(error.message).toContain("tenants[0].dataCores[0].flowTypes[0].name")
      expect(error.message).toContain("tenants[0].dataCores[0].flowTypes[0].eventTypes")
      const keys = join(dir, "keys.json")
      writeFileSync(keys, JSON.stringify({ apiKeys: ["fc_a_b_c"] }))
      expect((yield* Effect.flip(loadConfigFile(keys))).message).toContain("apiKeys[0]")
      const notJson = join(dir, "broken.json")
      writeFileSync(notJson, "{")
      expect((yield* Effect.flip(loadConfigFile(notJson))).message).toContain(notJson)
      expect((yield* Effect.flip(loadConfigFile(join(dir, "missing.json")))).message).toContain("missing.json")
    })
  )

  it.live("the CLI prints its URL and key, answers, and exits 0 on SIGTERM", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "emulator-cli-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const configPath = join(dir, "emulator.json")
      writeFileSync(configPath, JSON.stringify({ ...config, apiKeys: ["fc_cli_secret"] }))
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn(
            "node_modules/.bin/node",
            ["src/emulator/cli.ts", "--port", "0", "--config", configPath, "--latency-ms", "1"],
            {
              stdio: ["ignore", "pipe", "pipe"]
            }
          )
        ),
        (c: ChildProcess) => Effect.sync(() => c.exitCode === null && c.kill("SIGKILL"))
      )
      let output = ""
      child.stderr?.on("data", (chunk: Buffer) => {
        output += chunk.toString()
      })
      const url = yield* Effect.callback<string>((resume) => {
        child.stdout?.on("data", (chunk: Buffer) => {
          output += chunk.toString()
          const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
          if (match?.[1] !== undefined && output.includes("fc_cli_secret")) resume(Effect.succeed(match[1]))
        })
      }).pipe(Effect.timeout("20 seconds"), Effect.orDie)
      expect((yield* get(`${url}/__emulator/health`, {})).status).toBe(200)
      const cores = yield* get(`${url}/api/v1/data-cores?tenant=acme&name=orders`, {
        authorization: "ApiKey cli:fc_cli_secret"
      })
      expect(cores.status).toBe(200)
      expect((yield* get(`${url}/api/v1/data-cores?tenant=acme&name=orders`)).status).toBe(401)
      const exited = Effect.callback<number | null>((resume) => {
        child.once("exit", (code) => resume(Effect.succeed(code)))
      }).pipe(Effect.timeout("10 seconds"), Effect.orDie)
      child.kill("SIGTERM")
      expect(yield* exited).toBe(0)
    })
  )
})

describe("emulator: lifecycle", () => {
  it.live("FlowcoreEmulator.layer provides a running emulator and closes it with the layer", () =>
    Effect.gen(function* () {
      const url = yield* Effect.gen(function* () {
        const emu = yield* FlowcoreEmulator
        expect((yield* get(`${emu.url}/__emulator/health`, {})).body).toEqual({ status: "ok" })
        return emu.url
      }).pipe(Effect.provide(FlowcoreEmulator.layer(withConfig())))
      const after = yield* Effect.promise(() =>
        fetch(`${url}/__emulator/health`).then(
          () => "answered",
          () => "refused"
        )
      )
      expect(after).toBe("refused")
    })
  )

  it.live("close() is idempotent and ingest after close fails", () =>
    Effect.gen(function* () {
      const emu = yield* make(withConfig())
      yield* Effect.promise(() => Promise.all([emu.close(), emu.close()]))
      expect(() => ingestAt(emu, "order.created.0", new Date(HOUR))).toThrow(/closed/)
    })
  )

  it.live("rejects invalid options and config conflicts with an EmulatorError", () =>
    Effect.gen(function* () {
      expect((yield* Effect.flip(make({ port: 70_000 }))).message).toContain("port")
      expect((yield* Effect.flip(make({ faults: { errorRate: 3 } }))).message).toContain("errorRate")
      expect((yield* Effect.flip(make({ config: { apiKeys: ["nope"] } }))).message).toContain("apiKeys[0]")
      const duplicateId = yield* Effect.flip(
        make({
          config: {
            tenants: [
              { name: "a", id: "same", dataCores: [] },
              { name: "b", id: "same", dataCores: [] }
            ]
          }
        })
      )
      expect(duplicateId.message).toContain("same")
    })
  )

  it.live("leaves no sockets, servers or child processes behind", () =>
    Effect.gen(function* () {
      const leaked = () =>
        process
          .getActiveResourcesInfo()
          .filter((r) => r === "TCPSocketWrap" || r === "TCPServerWrap" || r === "ProcessWrap")
      // closing sockets finish on the next turns of the event loop
      const remaining = yield* Effect.sync(leaked).pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (r) => r.length === 0, times: 50 })
      )
      expect(remaining).toEqual([])
    })
  )
})
