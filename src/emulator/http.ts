/**
 * The HTTP face of the emulator on plain node:http (the benchmarks compare against a raw fetch loop on this server,
 * so the hot path is synchronous code with one JSON.stringify per response). Routes: protocol §12 and the two by-names
 * reads of §3.7, plus admin endpoints under /__emulator/ that need no auth and see no faults.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import { Result, Schema } from "effect"
import { TimeBucketSchema } from "../domain/TimeBucket.ts"
import { sortKey, TimeUuid } from "../domain/TimeUuid.ts"
import {
  decodeWith,
  defaultFaults,
  describeProblems,
  EmulatorError,
  type EmulatorFaults,
  type FieldProblem,
  parseFaultsPatch
} from "./config.ts"
import { type EmulatorState, type IngestItem, isRejection } from "./core.ts"
import type { NotificationHub } from "./notifications.ts"
import { bucketsOf, type EventStream, type LowerBound, pageOf } from "./store.ts"

const MAX_BODY_BYTES = 64 * 1024 * 1024

/** Mutable fault settings shared by the HTTP server and the WebSocket hub. */
export class FaultState {
  #faults: EmulatorFaults = defaultFaults

  get current(): EmulatorFaults {
    return this.#faults
  }

  /** Validates and applies a partial update; throws `EmulatorError` naming the bad field. */
  set(patch: unknown): EmulatorFaults {
    const parsed = parseFaultsPatch(patch)
    if (Result.isFailure(parsed)) throw new EmulatorError({ message: parsed.failure })
    this.#faults = { ...this.#faults, ...parsed.success }
    return this.#faults
  }

  takeMalformed(): boolean {
    if (this.#faults.malformedResponses <= 0) return false
    this.#faults = { ...this.#faults, malformedResponses: this.#faults.malformedResponses - 1 }
    return true
  }
}

/** Who may call: full API keys (`fc_<id>_<secret>`) and bearer tokens, or everyone when `open`. */
export class Credentials {
  readonly open: boolean
  readonly #keyIds = new Map<string, string>()
  readonly #tokens: ReadonlySet<string>

  constructor(open: boolean, apiKeys: ReadonlyArray<string>, bearerTokens: ReadonlyArray<string>) {
    this.open = open
    for (const key of apiKeys) this.#keyIds.set(key, key.split("_")[1] as string)
    this.#tokens = new Set(bearerTokens)
  }

  #apiKeyHeader(value: string): boolean {
    const rest = value.slice(7)
    const colon = rest.indexOf(":")
    if (colon < 0) return false
    const id = rest.slice(0, colon)
    return this.#keyIds.get(rest.slice(colon + 1)) === id
  }

  /** Data API: `ApiKey <id>:<fullKey>` or `Bearer <token>`. */
  data(header: string | undefined): boolean {
    if (this.open) return true
    if (header === undefined) return false
    const scheme = header.slice(0, 7).toLowerCase()
    if (scheme === "apikey ") return this.#apiKeyHeader(header)
    if (scheme === "bearer ") return this.#tokens.has(header.slice(7))
    return false
  }

  /** Ingestion: the raw key (what the SDK sends), or the `ApiKey` form. */
  ingestion(header: string | undefined): boolean {
    if (this.open) return true
    if (header === undefined) return false
    if (this.#keyIds.has(header)) return true
    return header.slice(0, 7).toLowerCase() === "apikey " && this.#apiKeyHeader(header)
  }

  /** WebSocket: `api_key` (+ matching `api_key_id` when given) or `token` in the query string. */
  webSocket(query: URLSearchParams): boolean {
    if (this.open) return true
    const key = query.get("api_key")
    if (key !== null) {
      const id = this.#keyIds.get(key)
      const givenId = query.get("api_key_id")
      return id !== undefined && (givenId === null || givenId === id)
    }
    const token = query.get("token")
    return token !== null && this.#tokens.has(token)
  }
}

export interface HttpStats {
  requests: number
  readonly byPath: Map<string, number>
  readonly pulses: Array<unknown>
}

export interface HttpContext {
  readonly state: EmulatorState
  readonly hub: NotificationHub
  readonly credentials: Credentials
  readonly faults: FaultState
  readonly stats: HttpStats
  /** Snapshot for GET /__emulator/stats. */
  readonly statsJson: () => unknown
}

interface Reply {
  readonly status: number
  readonly body: string
}

const json = (status: number, value: unknown): Reply => ({ status, body: JSON.stringify(value) })
const failure = (status: number, message: string): Reply => json(status, { message, statusCode: status })
const UNAUTHORIZED = failure(401, "Unauthorized")

const send = (res: ServerResponse, reply: Reply): void => {
  if (res.destroyed || res.headersSent) return
  res.writeHead(reply.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(reply.body)
  })
  res.end(reply.body)
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

// ---------------------------------------------------------------------------------------------------------------
// Query decoding (Schema, so bad input gets a 400 that names the parameter)

const NonEmpty = Schema.String.check(Schema.isNonEmpty())
const IdList = Schema.Array(NonEmpty).check(Schema.isMinLength(1))
const IntParam = (minimum: number, maximum: number) =>
  Schema.FiniteFromString.check(Schema.isInt(), Schema.isBetween({ minimum, maximum }))
const TimeUuidParam = Schema.String.check(
  Schema.makeFilter((value: string) =>
    TimeUuid.isTimeUuid(value) ? undefined : `a version-1 time UUID (8-4-4-4-12 hex), got ${JSON.stringify(value)}`
  )
)

const EventsQuery = Schema.Struct({
  eventTypeId: IdList,
  timeBucket: TimeBucketSchema,
  cursor: Schema.optionalKey(Schema.String),
  pageSize: Schema.optionalKey(IntParam(1, 10_000)),
  fromEventId: Schema.optionalKey(TimeUuidParam),
  afterEventId: Schema.optionalKey(TimeUuidParam),
  toEventId: Schema.optionalKey(TimeUuidParam),
  order: Schema.optionalKey(Schema.Literals(["asc", "desc"])),
  includeSensitiveData: Schema.optionalKey(Schema.Literals(["true", "false"]))
})
const TimeBucketsQuery = Schema.Struct({
  eventTypeId: IdList,
  pageSize: Schema.optionalKey(IntParam(1, 10_000)),
  cursor: Schema.optionalKey(IntParam(0, Number.MAX_SAFE_INTEGER)),
  fromTimeBucket: Schema.optionalKey(TimeBucketSchema),
  toTimeBucket: Schema.optionalKey(TimeBucketSchema),
  order: Schema.optionalKey(Schema.Literals(["asc", "desc"]))
})
const DataCoresQuery = Schema.Struct({
  tenant: Schema.optionalKey(NonEmpty),
  tenantId: Schema.optionalKey(NonEmpty),
  name: Schema.optionalKey(NonEmpty)
})
const FlowTypesQuery = Schema.Struct({ dataCoreId: NonEmpty, name: Schema.optionalKey(NonEmpty) })
const EventTypesQuery = Schema.Struct({ flowTypeId: NonEmpty, name: Schema.optionalKey(NonEmpty) })

/** The body of the by-names reads (protocol §3.7): a flow type's event types by name, the data core by id or name. */
const ByNames = {
  tenant: NonEmpty,
  dataCoreId: NonEmpty,
  flowType: NonEmpty,
  eventTypes: Schema.Array(NonEmpty).check(Schema.isMinLength(1))
}
const EventsByNamesBody = Schema.Struct({ ...ByNames, timeBucket: TimeBucketSchema })
const TimeBucketsByNamesBody = Schema.Struct({
  ...ByNames,
  cursor: Schema.optionalKey(Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))),
  pageSize: Schema.optionalKey(Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 10_000 }))),
  fromTimeBucket: Schema.optionalKey(TimeBucketSchema),
  toTimeBucket: Schema.optionalKey(TimeBucketSchema)
})

const decodeEventsQuery = decodeWith(EventsQuery, "ignore")
const decodeEventsByNamesBody = decodeWith(EventsByNamesBody, "ignore")
const decodeTimeBucketsByNamesBody = decodeWith(TimeBucketsByNamesBody, "ignore")
const decodeTimeBucketsQuery = decodeWith(TimeBucketsQuery, "ignore")
const decodeDataCoresQuery = decodeWith(DataCoresQuery, "ignore")
const decodeFlowTypesQuery = decodeWith(FlowTypesQuery, "ignore")
const decodeEventTypesQuery = decodeWith(EventTypesQuery, "ignore")

/** Query string to an object: `eventTypeId` is repeated, every other parameter takes its first value. */
const queryObject = (query: string): Record<string, string | Array<string>> => {
  const out: Record<string, string | Array<string>> = {}
  for (const [key, value] of new URLSearchParams(query)) {
    if (key === "eventTypeId") {
      const list = out[key]
      if (Array.isArray(list)) list.push(value)
      else out[key] = [value]
    } else if (!(key in out)) {
      out[key] = value
    }
  }
  return out
}

const badQuery = (problems: ReadonlyArray<FieldProblem>): Reply =>
  failure(400, `Invalid query: ${describeProblems(problems)}`)

const CURSOR_KEY = /^[0-9a-f]{31}$/

const encodeCursor = (key: string) => Buffer.from(key, "latin1").toString("base64url")
const decodeCursor = (cursor: string): string | undefined => {
  const key = Buffer.from(cursor, "base64url").toString("latin1")
  return CURSOR_KEY.test(key) ? key : undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Data API routes

const streamsOf = (state: EmulatorState, eventTypeIds: ReadonlyArray<string>): Array<EventStream> => {
  const streams: Array<EventStream> = []
  const seen = new Set<string>()
  for (const id of eventTypeIds) {
    if (seen.has(id) || state.registry.eventTypeById(id) === undefined) continue
    seen.add(id)
    streams.push(state.streamOf(id))
  }
  return streams
}

/**
 * `order=desc`: the bucket's newest `pageSize` events, newest first. The SDK documents that "pagination and filters
 * are not possible" then, so a cursor or an event-id bound is a 400 and no nextCursor is given (inferred).
 */
const newestEvents = (state: EmulatorState, q: typeof EventsQuery.Type): Reply => {
  const positioned = (["cursor", "fromEventId", "afterEventId", "toEventId"] as const).filter((k) => q[k] !== undefined)
  if (positioned.length > 0) {
    return failure(
      400,
      `Invalid query: ${positioned.join(", ")}: not possible with order=desc (no pagination or filters)`
    )
  }
  const streams = streamsOf(state, q.eventTypeId)
  const total = streams.reduce((n, stream) => n + stream.eventsIn(q.timeBucket).keys.length, 0)
  const all = total === 0 ? [] : pageOf(streams, q.timeBucket, undefined, undefined, total).events
  return json(200, { events: all.slice(-(q.pageSize ?? 1000)).reverse() })
}

const eventsRoute = (state: EmulatorState, query: string): Reply => {
  const decoded = decodeEventsQuery(queryObject(query))
  if (Result.isFailure(decoded)) return badQuery(decoded.failure)
  const q = decoded.success
  if (q.order === "desc") return newestEvents(state, q)
  let from: LowerBound | undefined
  if (q.cursor !== undefined) {
    const key = decodeCursor(q.cursor)
    if (key === undefined) return failure(400, `Invalid query: cursor: not a cursor issued by this server`)
    from = { key, inclusive: false }
  } else if (q.fromEventId !== undefined) {
    from = { key: sortKey(q.fromEventId.toLowerCase()), inclusive: true }
  } else if (q.afterEventId !== undefined) {
    from = { key: sortKey(q.afterEventId.toLowerCase()), inclusive: false }
  }
  const toKey = q.toEventId === undefined ? undefined : sortKey(q.toEventId.toLowerCase())
  const page = pageOf(streamsOf(state, q.eventTypeId), q.timeBucket, from, toKey, q.pageSize ?? 1000)
  return json(200, {
    events: page.events,
    nextCursor: page.continueAfter === undefined ? undefined : encodeCursor(page.continueAfter)
  })
}

const timeBucketsRoute = (state: EmulatorState, query: string): Reply => {
  const decoded = decodeTimeBucketsQuery(queryObject(query))
  if (Result.isFailure(decoded)) return badQuery(decoded.failure)
  const q = decoded.success
  const ascending = bucketsOf(streamsOf(state, q.eventTypeId), q.fromTimeBucket, q.toTimeBucket)
  const all = q.order === "desc" ? [...ascending].reverse() : ascending
  const offset = q.cursor ?? 0
  const pageSize = q.pageSize ?? 10_000
  const end = offset + pageSize
  return json(200, { timeBuckets: all.slice(offset, end), nextCursor: end < all.length ? end : undefined })
}

const badBody = (problems: ReadonlyArray<FieldProblem>): Reply =>
  failure(400, `Invalid body: ${describeProblems(problems)}`)

/** The ids of the event types a by-names body names, or the 404 that says which name is unknown (inferred). */
const eventTypeIdsByName = (
  state: EmulatorState,
  body: {
    readonly tenant: string
    readonly dataCoreId: string
    readonly flowType: string
    readonly eventTypes: ReadonlyArray<string>
  }
): Array<string> | Reply => {
  const registry = state.registry
  const tenant = registry.tenantByName(body.tenant)
  if (tenant === undefined) return failure(404, `Tenant "${body.tenant}" not found`)
  const dataCore = registry.dataCoreByIdOrName(tenant.id, body.dataCoreId)
  if (dataCore === undefined) return failure(404, `Data core ${body.dataCoreId} not found in tenant "${body.tenant}"`)
  const flowType = registry.flowTypeByName(dataCore.id, body.flowType)
  if (flowType === undefined) return failure(404, `Flow type "${body.flowType}" not found in data core ${dataCore.id}`)
  const ids: Array<string> = []
  for (const name of body.eventTypes) {
    const eventType = registry.eventTypeByName(flowType.id, name)
    if (eventType === undefined) return failure(404, `Event type "${name}" not found in flow type "${body.flowType}"`)
    ids.push(eventType.id)
  }
  return ids
}

const idsQuery = (ids: ReadonlyArray<string>) => ids.map((id) => `eventTypeId=${encodeURIComponent(id)}`).join("&")

/** `POST /api/v1/events`: the event list by names, the page parameters in the query (as `EventsFetchCommand`). */
const eventsByNamesRoute = (state: EmulatorState, body: unknown, query: string): Reply => {
  const decoded = decodeEventsByNamesBody(body)
  if (Result.isFailure(decoded)) return badBody(decoded.failure)
  const ids = eventTypeIdsByName(state, decoded.success)
  if (!Array.isArray(ids)) return ids
  // The body's event types and bucket, then the query's page parameters (eventTypeId and timeBucket are the body's).
  const page = new URLSearchParams(query)
  page.delete("eventTypeId")
  page.delete("timeBucket")
  const rest = page.toString()
  return eventsRoute(state, `${idsQuery(ids)}&timeBucket=${decoded.success.timeBucket}${rest === "" ? "" : `&${rest}`}`)
}

/** `POST /api/v1/time-buckets/by-names`: the bucket list by names, everything in the body. */
const timeBucketsByNamesRoute = (state: EmulatorState, body: unknown): Reply => {
  const decoded = decodeTimeBucketsByNamesBody(body)
  if (Result.isFailure(decoded)) return badBody(decoded.failure)
  const ids = eventTypeIdsByName(state, decoded.success)
  if (!Array.isArray(ids)) return ids
  const { cursor, pageSize, fromTimeBucket, toTimeBucket } = decoded.success
  const params = new URLSearchParams()
  if (cursor !== undefined) params.set("cursor", String(cursor))
  if (pageSize !== undefined) params.set("pageSize", String(pageSize))
  if (fromTimeBucket !== undefined) params.set("fromTimeBucket", fromTimeBucket)
  if (toTimeBucket !== undefined) params.set("toTimeBucket", toTimeBucket)
  const rest = params.toString()
  return timeBucketsRoute(state, `${idsQuery(ids)}${rest === "" ? "" : `&${rest}`}`)
}

const instance = (tenant: { readonly dedicatedDomain: string | undefined }) =>
  tenant.dedicatedDomain === undefined
    ? { isDedicated: false, instance: null }
    : { isDedicated: true, instance: { status: "active", domain: tenant.dedicatedDomain } }

/** Routes under /api/v1 (GET), given the path segments after it. */
const dataRoute = (state: EmulatorState, segments: ReadonlyArray<string>, query: string): Reply => {
  const registry = state.registry
  const [resource, a, b, c] = segments
  const n = segments.length
  switch (resource) {
    case "events":
      return n === 1 ? eventsRoute(state, query) : notFound()
    case "time-buckets":
      return n === 1 ? timeBucketsRoute(state, query) : notFound()
    case "tenants": {
      if (n === 3 && a === "translate-name-to-id" && b !== undefined) {
        const tenant = registry.tenantByName(b)
        return tenant === undefined
          ? failure(404, `Tenant "${b}" not found`)
          : json(200, { id: tenant.id, name: tenant.name })
      }
      if (n === 4 && c === "instance" && b !== undefined && (a === "by-name" || a === "by-id")) {
        const tenant = a === "by-name" ? registry.tenantByName(b) : registry.tenantById(b)
        return tenant === undefined
          ? failure(404, `Tenant ${a === "by-name" ? `"${b}"` : b} not found`)
          : json(200, instance(tenant))
      }
      return notFound()
    }
    case "data-cores": {
      if (n === 2 && a !== undefined) {
        const dataCore = registry.dataCoreById(a)
        return dataCore === undefined ? failure(404, `Data core ${a} not found`) : json(200, dataCore)
      }
      if (n !== 1) return notFound()
      const decoded = decodeDataCoresQuery(queryObject(query))
      if (Result.isFailure(decoded)) return badQuery(decoded.failure)
      const q = decoded.success
      if (q.tenant === undefined && q.tenantId === undefined) {
        return failure(400, "Invalid query: tenant or tenantId is required")
      }
      const tenant = q.tenantId !== undefined ? registry.tenantById(q.tenantId) : registry.tenantByName(q.tenant ?? "")
      if (tenant === undefined || (q.tenant !== undefined && tenant.name !== q.tenant)) return json(200, [])
      if (q.name === undefined) return json(200, registry.dataCoresOf(tenant.id))
      const dataCore = registry.dataCoreByName(tenant.id, q.name)
      return json(200, dataCore === undefined ? [] : [dataCore])
    }
    case "flow-types": {
      if (n === 2 && a !== undefined) {
        const flowType = registry.flowTypeById(a)
        return flowType === undefined ? failure(404, `Flow type ${a} not found`) : json(200, flowType)
      }
      if (n !== 1) return notFound()
      const decoded = decodeFlowTypesQuery(queryObject(query))
      if (Result.isFailure(decoded)) return badQuery(decoded.failure)
      const q = decoded.success
      if (q.name === undefined) return json(200, registry.flowTypesOf(q.dataCoreId))
      const flowType = registry.flowTypeByName(q.dataCoreId, q.name)
      return json(200, flowType === undefined ? [] : [flowType])
    }
    case "event-types": {
      if (n === 2 && a !== undefined) {
        const eventType = registry.eventTypeById(a)
        return eventType === undefined ? failure(404, `Event type ${a} not found`) : json(200, eventType)
      }
      if (n !== 1) return notFound()
      const decoded = decodeEventTypesQuery(queryObject(query))
      if (Result.isFailure(decoded)) return badQuery(decoded.failure)
      const q = decoded.success
      if (q.name === undefined) return json(200, registry.eventTypesOf(q.flowTypeId))
      const eventType = registry.eventTypeByName(q.flowTypeId, q.name)
      return json(200, eventType === undefined ? [] : [eventType])
    }
    default:
      return notFound()
  }
}

const notFound = (): Reply => failure(404, "No such route on the Flowcore emulator")

// ---------------------------------------------------------------------------------------------------------------
// Ingestion

const decodeBase64Text = (value: string): string => {
  const bytes = Buffer.from(value, "base64")
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {
    // The SDK encodes with btoa, i.e. one byte per Latin-1 character.
    return bytes.toString("latin1")
  }
}

const isJsonObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

interface Headers {
  readonly metadata: Record<string, unknown>
  readonly eventTime: Date | undefined
  readonly validTime: string | undefined
}

const ingestionHeaders = (req: IncomingMessage): Headers | Reply => {
  let metadata: Record<string, unknown> = {}
  const rawMetadata = header(req, "x-flowcore-metadata-json")
  if (rawMetadata !== undefined && rawMetadata !== "") {
    let parsed: unknown
    try {
      parsed = JSON.parse(decodeBase64Text(rawMetadata))
    } catch {
      return failure(400, "x-flowcore-metadata-json must be base64 of a JSON object; it is not valid JSON")
    }
    if (!isJsonObject(parsed)) return failure(400, "x-flowcore-metadata-json must be base64 of a JSON object")
    metadata = parsed
  }
  const instant = (name: string): Date | Reply | undefined => {
    const value = header(req, name)
    if (value === undefined || value === "") return undefined
    const date = new Date(value)
    return Number.isNaN(date.getTime())
      ? failure(400, `${name} must be an ISO-8601 date-time, got ${JSON.stringify(value)}`)
      : date
  }
  const eventTime = instant("x-flowcore-event-time")
  if (eventTime !== undefined && !(eventTime instanceof Date)) return eventTime
  const validTime = instant("x-flowcore-valid-time")
  if (validTime !== undefined && !(validTime instanceof Date)) return validTime
  return { metadata, eventTime, validTime: validTime === undefined ? undefined : header(req, "x-flowcore-valid-time") }
}

const ingestRoute = (
  ctx: HttpContext,
  req: IncomingMessage,
  segments: ReadonlyArray<string>,
  batch: boolean,
  body: unknown
): Reply => {
  const [tenant, dataCore, flowType, eventType] = segments
  if (
    segments.length !== 4 ||
    tenant === undefined ||
    dataCore === undefined ||
    flowType === undefined ||
    eventType === undefined
  ) {
    return failure(
      404,
      `Ingestion path must be /${batch ? "events" : "event"}/<tenant>/<dataCore>/<flowType>/<eventType>`
    )
  }
  const headers = ingestionHeaders(req)
  if ("status" in headers) return headers
  const item = (payload: Record<string, unknown>): IngestItem => ({
    payload,
    metadata: headers.metadata,
    eventTime: headers.eventTime,
    validTime: headers.validTime
  })
  let items: Array<IngestItem>
  if (batch) {
    if (!Array.isArray(body)) return failure(400, "Batch body must be a JSON array of event payload objects")
    items = new Array(body.length)
    for (let i = 0; i < body.length; i++) {
      const payload: unknown = body[i]
      if (!isJsonObject(payload)) return failure(400, `Batch body[${i}] must be a JSON object (the event payload)`)
      items[i] = item(payload)
    }
  } else {
    if (!isJsonObject(body)) return failure(400, "Body must be a JSON object (the event payload)")
    items = [item(body)]
  }
  const outcome = ctx.state.ingest({ tenant, dataCore, flowType, eventType }, items)
  if (isRejection(outcome)) return failure(outcome.status, outcome.message)
  return batch ? json(200, { eventIds: outcome, success: true }) : json(200, { eventId: outcome[0], success: true })
}

// ---------------------------------------------------------------------------------------------------------------
// Admin

const adminRoute = (ctx: HttpContext, method: string, path: string, body: unknown): Reply => {
  switch (`${method} ${path}`) {
    case "GET /__emulator/health":
      return json(200, { status: "ok" })
    case "GET /__emulator/faults":
      return json(200, ctx.faults.current)
    case "POST /__emulator/faults":
      try {
        return json(200, ctx.faults.set(body))
      } catch (error) {
        return failure(400, error instanceof EmulatorError ? error.message : String(error))
      }
    case "POST /__emulator/ws/drop":
      return json(200, { dropped: ctx.hub.dropAll() })
    case "GET /__emulator/stats":
      return json(200, ctx.statsJson())
    default:
      return failure(404, "No such admin route (health, faults, ws/drop, stats)")
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch

type Body = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reply: Reply }

const readBody = (req: IncomingMessage, onBody: (body: Body) => void): void => {
  const chunks: Array<Buffer> = []
  let size = 0
  let failed = false
  req.on("data", (chunk: Buffer) => {
    if (failed) return
    size += chunk.length
    if (size > MAX_BODY_BYTES) {
      failed = true
      onBody({ ok: false, reply: failure(413, `Body larger than ${MAX_BODY_BYTES} bytes`) })
      return
    }
    chunks.push(chunk)
  })
  req.on("end", () => {
    if (failed) return
    const text = chunks.length === 1 ? (chunks[0] as Buffer).toString("utf8") : Buffer.concat(chunks).toString("utf8")
    if (text === "") return onBody({ ok: true, value: undefined })
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return onBody({ ok: false, reply: failure(400, "Body is not valid JSON") })
    }
    onBody({ ok: true, value })
  })
}

const splitPath = (path: string): Array<string> | undefined => {
  try {
    return path
      .split("/")
      .filter((s) => s !== "")
      .map(decodeURIComponent)
  } catch {
    return undefined
  }
}

export interface RequestHandlers {
  readonly request: (req: IncomingMessage, res: ServerResponse) => void
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  /** Cancels responses still waiting on the latency fault. */
  readonly cancelPending: () => void
}

export const makeHandlers = (ctx: HttpContext): RequestHandlers => {
  const delayed = new Set<ReturnType<typeof setTimeout>>()
  const count = (path: string) => {
    ctx.stats.requests++
    ctx.stats.byPath.set(path, (ctx.stats.byPath.get(path) ?? 0) + 1)
  }

  const guarded = (res: ServerResponse, run: () => void) => {
    try {
      run()
    } catch (error) {
      send(res, failure(500, `Emulator internal error: ${error instanceof Error ? error.message : String(error)}`))
    }
  }

  /** Latency, then auth, then the error-rate and malformed faults, then the route itself. */
  const serveData = (req: IncomingMessage, res: ServerResponse, route: () => Reply): void => {
    const respond = () => {
      if (!ctx.credentials.data(header(req, "authorization"))) return send(res, UNAUTHORIZED)
      const faults = ctx.faults.current
      if (faults.errorRate > 0 && Math.random() < faults.errorRate) {
        return send(res, failure(faults.errorStatus, `Injected fault: status ${faults.errorStatus}`))
      }
      const reply = route()
      if (ctx.faults.takeMalformed()) {
        return send(res, { status: 200, body: reply.body.slice(0, Math.max(1, Math.floor(reply.body.length / 2))) })
      }
      send(res, reply)
    }
    const latency = ctx.faults.current.latencyMs
    if (latency <= 0) {
      guarded(res, respond)
      return
    }
    const timer = setTimeout(() => {
      delayed.delete(timer)
      guarded(res, respond)
    }, latency)
    delayed.add(timer)
  }

  const withBody = (req: IncomingMessage, res: ServerResponse, use: (body: unknown) => void) =>
    readBody(req, (body) => (body.ok ? use(body.value) : send(res, body.reply)))

  const request = (req: IncomingMessage, res: ServerResponse): void => {
    req.on("error", () => req.destroy())
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q < 0 ? url : url.slice(0, q)
    const query = q < 0 ? "" : url.slice(q + 1)
    const method = req.method ?? "GET"
    guarded(res, () => {
      if (path.startsWith("/__emulator/")) {
        if (method === "POST")
          return withBody(req, res, (body) => guarded(res, () => send(res, adminRoute(ctx, method, path, body))))
        return send(res, adminRoute(ctx, method, path, undefined))
      }
      count(path)
      const segments = splitPath(path)
      if (segments === undefined) return send(res, failure(400, "Path is not valid percent-encoding"))
      const [first, second, ...rest] = segments
      if (method === "POST" && (first === "event" || first === "events")) {
        if (!ctx.credentials.ingestion(header(req, "authorization"))) return send(res, UNAUTHORIZED)
        return withBody(req, res, (body) =>
          guarded(res, () => send(res, ingestRoute(ctx, req, segments.slice(1), first === "events", body)))
        )
      }
      if (first === "api" && second === "v1") {
        if (method === "GET") return serveData(req, res, () => dataRoute(ctx.state, rest, query))
        if (method === "POST" && rest.length === 1 && rest[0] === "events") {
          return withBody(req, res, (body) => serveData(req, res, () => eventsByNamesRoute(ctx.state, body, query)))
        }
        if (method === "POST" && rest.length === 2 && rest[0] === "time-buckets" && rest[1] === "by-names") {
          return withBody(req, res, (body) => serveData(req, res, () => timeBucketsByNamesRoute(ctx.state, body)))
        }
        if (method === "POST" && rest.length === 1 && rest[0] === "pump-pulse") {
          return withBody(req, res, (body) =>
            serveData(req, res, () => {
              if (!isJsonObject(body)) return failure(400, "Pump pulse body must be a JSON object")
              ctx.stats.pulses.push(body)
              return json(200, { status: "ok" })
            })
          )
        }
      }
      send(res, notFound())
    })
  }

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q < 0 ? url : url.slice(0, q)
    count(path)
    if (path !== "/notifications") {
      socket.on("error", () => socket.destroy())
      const body = JSON.stringify({ message: "Only /notifications accepts WebSocket upgrades", statusCode: 404 })
      socket.end(
        `HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        () => socket.destroy()
      )
      return
    }
    ctx.hub.upgrade(req, socket, head, ctx.credentials.webSocket(new URLSearchParams(q < 0 ? "" : url.slice(q + 1))))
  }

  const cancelPending = () => {
    for (const timer of delayed) clearTimeout(timer)
    delayed.clear()
  }

  return { request, upgrade, cancelPending }
}
