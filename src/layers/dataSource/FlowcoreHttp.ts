/**
 * The real DataSource: Flowcore's REST API (protocol §2, §3) over `effect/http`. Names are translated to ids once,
 * dedicated tenants are routed through the tenant instance lookup (cached 60 s), and every call is retried, timed out,
 * counted and turned into a `DataSourceError` that never carries a credential.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Cache, Clock, Duration, Effect, Exit, Layer, Schema } from "effect"
import { HttpClient } from "effect/http"
import { ChurnMap } from "../../domain/ChurnMap.ts"
import type { FlowcoreConnection } from "../../domain/config.ts"
import { DataSourceError, InvalidOptions } from "../../domain/errors.ts"
import { type FlowcoreEvent, validateEvents } from "../../domain/FlowcoreEvent.ts"
import { type TimeBucket, TimeBucketSchema } from "../../domain/TimeBucket.ts"
import { DataSource, type EventPage, type PageRequest, type ResolvedSource } from "../../services/DataSource.ts"
import { PumpMetrics } from "../../services/PumpMetrics.ts"
import {
  type CommandName,
  decodeBody,
  decodeJson,
  makeCommandRunner,
  notJson,
  type ResponseBody,
  type RetryPolicy
} from "./HttpCommand.ts"
import { decodedPage, type SplitPage, splitPage } from "./PageSplit.ts"
import { cursorHint, makeReadAhead } from "./ReadAhead.ts"

export interface FlowcoreHttpOptions {
  readonly connection: FlowcoreConnection
  /** Per attempt, default 30 000 ms. */
  readonly requestTimeoutMs?: number
  /** Defaults: 250 ms base delay, 10 000 ms cap, 5 retries. */
  readonly retry?: { readonly baseDelayMs?: number; readonly maxDelayMs?: number; readonly maxRetries?: number }
  /** Page size of the time-bucket listing, default 10 000. */
  readonly timeBucketPageSize?: number
}

/** Public hosts per command (protocol §2). */
export const FlowcoreHosts = {
  tenant: "https://tenant.api.flowcore.io",
  dataCore: "https://data-core-2.api.flowcore.io",
  flowType: "https://flow-type-2.api.flowcore.io",
  eventType: "https://event-type-2.api.flowcore.io",
  eventSource: "https://event-source.api.flowcore.io"
} as const

const TENANT_INSTANCE_TTL = Duration.seconds(60)

const Named = Schema.Struct({ id: Schema.String, name: Schema.String })
const NamedList = Schema.Array(Named)

const TenantInstance = Schema.Struct({
  isDedicated: Schema.Boolean,
  instance: Schema.optionalKey(Schema.NullOr(Schema.Struct({ domain: Schema.optionalKey(Schema.String) })))
})

const TimeBucketPage = Schema.Struct({
  timeBuckets: Schema.Array(TimeBucketSchema),
  nextCursor: Schema.optionalKey(Schema.Number)
})

/** `events` stays unknown here: `validateEvents` checks it in place without copying the page. */
const EventListPage = Schema.Struct({
  events: Schema.Unknown,
  nextCursor: Schema.optionalKey(Schema.String)
})

/** A dedicated domain is spliced into a URL, so only host characters (and a port) are accepted. */
const HOST_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?$/

interface Settings {
  readonly requestTimeoutMs: number
  readonly retry: RetryPolicy
  readonly timeBucketPageSize: number
  readonly baseUrl: string | undefined
}

const positiveInt = (field: string, value: number | undefined, fallback: number, min = 1): number => {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) {
    throw InvalidOptions.of(field, value, `an integer >= ${min}`)
  }
  return value
}

const normaliseBaseUrl = (value: string | undefined): string | undefined => {
  if (value === undefined) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw InvalidOptions.of("baseUrlOverride", value, "an absolute http(s) URL such as http://127.0.0.1:8080")
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw InvalidOptions.of("baseUrlOverride", value, "an absolute http(s) URL such as http://127.0.0.1:8080")
  }
  // The override is a prefix for every path (as in the SDK), so a trailing slash would double up.
  return `${url.origin}${url.pathname}`.replace(/\/+$/, "")
}

const settingsOf = (options: FlowcoreHttpOptions): Settings => {
  const baseDelayMs = positiveInt("retry.baseDelayMs", options.retry?.baseDelayMs, 250)
  const maxDelayMs = positiveInt("retry.maxDelayMs", options.retry?.maxDelayMs, 10_000)
  if (maxDelayMs < baseDelayMs) {
    throw InvalidOptions.of("retry.maxDelayMs", maxDelayMs, `an integer >= retry.baseDelayMs (${baseDelayMs})`)
  }
  return {
    requestTimeoutMs: positiveInt("requestTimeoutMs", options.requestTimeoutMs, 30_000),
    retry: { baseDelayMs, maxDelayMs, maxRetries: positiveInt("retry.maxRetries", options.retry?.maxRetries, 5, 0) },
    timeBucketPageSize: positiveInt("timeBucketPageSize", options.timeBucketPageSize, 10_000),
    baseUrl: normaliseBaseUrl(options.connection.baseUrlOverride)
  }
}

/** Caches a lookup that succeeded (forever, or for `ttl`) but never a failure, so the next call tries again. */
const successCache = <K, A>(lookup: (key: K) => Effect.Effect<A, DataSourceError>, ttl: Duration.Duration) =>
  Cache.makeWith(lookup, {
    capacity: 64,
    timeToLive: (exit) => (Exit.isSuccess(exit) ? ttl : Duration.zero)
  })

const notFound = (command: CommandName, message: string) =>
  new DataSourceError({ command, kind: "NotFound", retryable: false, message: `${command}: ${message}` })

/** EventList query parameters in protocol order. */
const eventListParams = (
  resolved: ResolvedSource,
  request: PageRequest,
  cursor: string | undefined,
  pageSize: number
): Array<readonly [string, string]> => {
  const params: Array<readonly [string, string]> = resolved.eventTypeIds.map((id) => ["eventTypeId", id] as const)
  params.push(["timeBucket", request.timeBucket])
  if (cursor !== undefined) params.push(["cursor", cursor])
  params.push(["pageSize", String(pageSize)])
  if (cursor === undefined && request.afterEventId !== undefined) params.push(["afterEventId", request.afterEventId])
  if (request.toEventId !== undefined) params.push(["toEventId", request.toEventId])
  if (request.includeSensitiveData === true) params.push(["includeSensitiveData", "true"])
  return params
}

/** Pages kept requested ahead at most, by one FlowcoreHttp layer (pumps sharing a layer share them). */
const READ_AHEAD_DEPTH = 2

/** What a page request stands for, whatever its page size: the read-ahead key. */
const requestKey = (url: string, params: ReadonlyArray<readonly [string, string]>) =>
  `${url}?${params
    .filter(([name]) => name !== "pageSize")
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join("&")}`

/** A page to request ahead: its cursor (none for a bucket's first page), query and read-ahead key. */
interface Following {
  readonly cursor: string | undefined
  readonly params: ReadonlyArray<readonly [string, string]>
  readonly key: string
}

/** The page of `request` at `cursor` (none: the bucket's first page), as a request for `ahead` events. */
const pageAt = (
  url: string,
  resolved: ResolvedSource,
  request: PageRequest,
  cursor: string | undefined,
  ahead: number
): Following => {
  const params = eventListParams(resolved, request, cursor, ahead)
  return { cursor, params, key: requestKey(url, params) }
}

/** The page after the one whose raw body is `text` (by its nextCursor), as a request for `ahead` events. */
const following = (
  url: string,
  resolved: ResolvedSource,
  request: PageRequest,
  text: string,
  cursor: string | undefined,
  ahead: number
): Following | undefined => {
  const hint = cursorHint(text)
  return hint === undefined || hint === cursor ? undefined : pageAt(url, resolved, request, hint, ahead)
}

/** The first page of `bucket`, as the request that reads it after the bucket of `request`, for `ahead` events. */
const firstPageOf = (
  url: string,
  resolved: ResolvedSource,
  request: PageRequest,
  bucket: TimeBucket,
  ahead: number
): { readonly request: PageRequest; readonly page: Following } => {
  const next: PageRequest = { ...request, timeBucket: bucket, cursor: undefined, afterEventId: undefined }
  return { request: next, page: pageAt(url, resolved, next, undefined, ahead) }
}

/**
 * Starts a cursor of FlowcoreHttp's own, `PART_CURSOR` + the id of the last event handed out: the rest of a page that
 * is handed out in parts. A control character, so no server cursor (URL- and JSON-safe text) looks like it.
 */
const PART_CURSOR = "\u0001part:"

/** The rest of a page read whole: its events from `next` on are still to be handed out. */
interface Part {
  readonly page: SplitPage
  readonly next: number
  readonly requestedAt: number | undefined
  readonly body: ResponseBody
  /** The server's page after this one was requested ahead for this many events (undefined: it was not). */
  readonly serverReadAhead: number | undefined
  /** The read-ahead made with this page (the next page, or the following bucket's first), while it may be on its way. */
  readonly inFlight: string | undefined
}

/** What a part stands for: its position, and what else the request asks for (this layer's event types are fixed). */
const partKey = (request: PageRequest, cursor: string) =>
  `${request.timeBucket} ${request.toEventId ?? ""} ${request.includeSensitiveData === true} ${cursor}`

/** Parts kept, by the request that asks for them, at most `capacity` (the oldest goes first). */
const makeParts = (capacity = 4) => {
  const kept = new ChurnMap<string, Part>()
  return {
    set: (key: string, part: Part): void => {
      kept.delete(key)
      if (kept.size >= capacity) {
        const oldest = kept.oldestKey()
        if (oldest !== undefined) kept.delete(oldest)
      }
      kept.set(key, part)
    },
    take: (key: string): Part | undefined => {
      const part = kept.get(key)
      kept.delete(key)
      return part
    }
  }
}

interface WholePage {
  readonly nextCursor: string | undefined
  readonly events: ReadonlyArray<FlowcoreEvent>
  readonly split: undefined
}
/** A page decoded whole (`events`), or to be handed out in parts (`split`). */
type DecodedPage =
  | WholePage
  | { readonly nextCursor: string | undefined; readonly events: undefined; readonly split: SplitPage }

const decodeWhole = (body: ResponseBody): Effect.Effect<WholePage, DataSourceError> =>
  Effect.flatMap(decodeBody("EventList", body, EventListPage), (page) =>
    Effect.map(validateEvents("EventList", page.events), (events) => ({
      nextCursor: page.nextCursor,
      events,
      split: undefined
    }))
  )

/** The server's cursor after a page handed out in parts, from the rest of its body (final once every part is out). */
const cursorAfter = (body: ResponseBody, split: SplitPage): Effect.Effect<string | undefined, DataSourceError> =>
  Effect.map(decodeJson("EventList", body, split.rest(), EventListPage), (page) =>
    page.nextCursor === "" ? undefined : page.nextCursor
  )

/** Finds the events in the raw body without parsing them (PageSplit) and decodes the rest of the page. */
const decodeInParts = (body: ResponseBody): Effect.Effect<DecodedPage, DataSourceError> =>
  Effect.suspend(() => {
    const split = splitPage(body.text)
    // Not a body PageSplit can read: decoding it whole says what is wrong with it, or (JSON written in a way the
    // splitter does not follow) keeps it decoded instead, a page at most.
    if (split === undefined) {
      return Effect.map(decodeWhole(body), (page) => ({
        nextCursor: page.nextCursor,
        events: undefined,
        split: decodedPage(
          page.nextCursor === undefined ? { events: [] } : { events: [], nextCursor: page.nextCursor },
          page.events
        )
      }))
    }
    return Effect.map(cursorAfter(body, split), (nextCursor) => ({ nextCursor, events: undefined, split }))
  })

const make = Effect.fnUntraced(function* (options: FlowcoreHttpOptions) {
  // The layer cannot fail (its signature), so an invalid option is a defect: an InvalidOptions naming the field.
  const settings = yield* Effect.sync(() => settingsOf(options))
  const { connection } = options
  const { source } = connection
  const client = yield* HttpClient.HttpClient
  const metrics = yield* PumpMetrics
  const runner = makeCommandRunner({
    client,
    auth: connection.auth,
    metrics,
    requestTimeoutMs: settings.requestTimeoutMs,
    retry: settings.retry
  })
  const origin = (publicHost: string) => settings.baseUrl ?? publicHost
  const readAhead = makeReadAhead<{ readonly body: ResponseBody; readonly requestedAt: number }, DataSourceError>(
    yield* Effect.scope
  )
  const parts = makeParts()

  const firstByName = Effect.fnUntraced(function* (
    command: CommandName,
    url: string,
    params: ReadonlyArray<readonly [string, string]>,
    describe: string
  ) {
    const body = yield* runner.get(command, url, params)
    const list = yield* decodeBody(command, body, NamedList)
    const first = list[0]
    if (first === undefined) return yield* notFound(command, `${describe} does not exist`)
    return first
  })

  const translate = Effect.gen(function* () {
    const dataCore = yield* firstByName(
      "DataCoreFetch",
      `${origin(FlowcoreHosts.dataCore)}/api/v1/data-cores`,
      [
        ["tenant", source.tenant],
        ["name", source.dataCore]
      ],
      `data core "${source.dataCore}" in tenant "${source.tenant}"`
    )
    const flowType = yield* firstByName(
      "FlowTypeFetch",
      `${origin(FlowcoreHosts.flowType)}/api/v1/flow-types`,
      [
        ["dataCoreId", dataCore.id],
        ["name", source.flowType]
      ],
      `flow type "${source.flowType}" in data core "${source.dataCore}" (${dataCore.id}) of tenant "${source.tenant}"`
    )
    const body = yield* runner.get("EventTypeList", `${origin(FlowcoreHosts.eventType)}/api/v1/event-types`, [
      ["flowTypeId", flowType.id]
    ])
    const eventTypes = yield* decodeBody("EventTypeList", body, NamedList)
    const idByName = new Map(eventTypes.map((eventType) => [eventType.name, eventType.id]))
    const missing = source.eventTypes.filter((name) => !idByName.has(name))
    if (missing.length > 0) {
      const existing = eventTypes.length === 0 ? "none" : eventTypes.map((e) => JSON.stringify(e.name)).join(", ")
      return yield* notFound(
        "EventTypeList",
        `event type(s) ${missing.map((n) => JSON.stringify(n)).join(", ")} not found in flow type ` +
          `"${source.flowType}" (${flowType.id}); existing event types: ${existing}`
      )
    }
    return {
      tenant: source.tenant,
      dataCore: source.dataCore,
      dataCoreId: dataCore.id,
      flowType: source.flowType,
      flowTypeId: flowType.id,
      eventTypes: source.eventTypes,
      eventTypeIds: source.eventTypes.map((name) => idByName.get(name) as string)
    } satisfies ResolvedSource
  }).pipe(
    Effect.withSpan("FlowcoreHttp.resolve", {
      attributes: { "flowcore.flow_type": source.flowType, "flowcore.event_type_count": source.eventTypes.length }
    })
  )

  const untranslated: ResolvedSource = {
    tenant: source.tenant,
    dataCore: source.dataCore,
    dataCoreId: source.dataCore,
    flowType: source.flowType,
    flowTypeId: source.flowType,
    eventTypes: source.eventTypes,
    eventTypeIds: source.eventTypes
  }

  const resolveCache = yield* successCache((_: "source") => translate, Duration.infinity)
  const resolve: Effect.Effect<ResolvedSource, DataSourceError> = connection.noTranslation
    ? Effect.succeed(untranslated)
    : Cache.get(resolveCache, "source")

  const lookupEventSourceOrigin = Effect.fnUntraced(function* (tenant: string) {
    const body = yield* runner
      .get(
        "TenantInstanceFetch",
        `${origin(FlowcoreHosts.tenant)}/api/v1/tenants/by-name/${encodeURIComponent(tenant)}/instance`,
        []
      )
      .pipe(
        Effect.mapError((error) =>
          error.status === 404 ? notFound("TenantInstanceFetch", `tenant "${tenant}" does not exist (HTTP 404)`) : error
        )
      )
    const result = yield* decodeBody("TenantInstanceFetch", body, TenantInstance)
    if (!result.isDedicated) return origin(FlowcoreHosts.eventSource)
    const domain = result.instance?.domain
    if (domain === undefined || domain === "") {
      return yield* notFound(
        "TenantInstanceFetch",
        `tenant "${tenant}" is dedicated but has no dedicated domain configured`
      )
    }
    if (!HOST_PATTERN.test(domain)) {
      return yield* new DataSourceError({
        command: "TenantInstanceFetch",
        kind: "Decode",
        retryable: false,
        message: `TenantInstanceFetch: tenant "${tenant}" has dedicated domain ${JSON.stringify(domain.slice(0, 100))}, which is not a host name`
      })
    }
    // With an override the lookup is still made and validated (as the SDK does), but the override stays the origin:
    // it exists precisely to point every call at one server (the emulator, a proxy), dedicated tenant or not.
    return settings.baseUrl ?? `https://event-source.${domain}`
  })
  const instanceCache = yield* successCache(lookupEventSourceOrigin, TENANT_INSTANCE_TTL)
  const eventSourceOrigin: Effect.Effect<string, DataSourceError> = connection.directMode
    ? Effect.succeed(origin(FlowcoreHosts.eventSource))
    : Cache.get(instanceCache, source.tenant)

  const listTimeBuckets = Effect.gen(function* () {
    const resolved = yield* resolve
    const base = yield* eventSourceOrigin
    const typeParams = resolved.eventTypeIds.map((id) => ["eventTypeId", id] as const)
    const pageSize = String(settings.timeBucketPageSize)
    const buckets: Array<TimeBucket> = []
    let cursor: number | undefined
    let pages = 0
    while (true) {
      const params: Array<readonly [string, string]> = [...typeParams, ["pageSize", pageSize]]
      if (cursor !== undefined) params.push(["cursor", String(cursor)])
      const body = yield* runner.get("TimeBucketList", `${base}/api/v1/time-buckets`, params)
      const page = yield* decodeBody("TimeBucketList", body, TimeBucketPage)
      pages++
      for (const bucket of page.timeBuckets) buckets.push(bucket)
      const next = page.nextCursor
      if (next === undefined) break
      // A server cursor that does not move forward would page forever (protocol §11.21): keep what we have.
      if (next <= 0 || (cursor !== undefined && next <= cursor)) {
        yield* Effect.logWarning(
          `TimeBucketList: server returned nextCursor ${next} after cursor ${cursor ?? "none"}; ` +
            "treating it as the end of the list"
        )
        break
      }
      cursor = next
    }
    buckets.sort()
    const unique = buckets.filter((bucket, i) => i === 0 || bucket !== buckets[i - 1])
    yield* Effect.annotateCurrentSpan({ "flowcore.time_bucket_count": unique.length, "flowcore.page_count": pages })
    return unique as ReadonlyArray<TimeBucket>
  })
  const bucketCache = yield* successCache((_: "buckets") => listTimeBuckets, Duration.infinity)

  const timeBuckets = Effect.fn("FlowcoreHttp.timeBuckets")(function* (request?: {
    readonly refresh?: boolean | undefined
  }) {
    yield* Effect.annotateCurrentSpan({
      "flowcore.flow_type": source.flowType,
      "flowcore.event_type_count": source.eventTypes.length,
      "flowcore.refresh": request?.refresh === true
    })
    if (request?.refresh === true) yield* Cache.invalidate(bucketCache, "buckets")
    return yield* Cache.get(bucketCache, "buckets")
  })

  /**
   * Requests `next` ahead unless it already is; once a read-ahead is in, the page after it goes out too, so that up
   * to READ_AHEAD_DEPTH pages are on their way (the server's pauses then cost the pump nothing).
   */
  const readAheadFrom = (
    url: string,
    resolved: ResolvedSource,
    request: PageRequest,
    next: Following,
    ahead: number
  ): Effect.Effect<void> =>
    Effect.suspend(() => {
      const chain = (text: string) =>
        Effect.suspend(() => {
          if (readAhead.size() >= READ_AHEAD_DEPTH) return Effect.void
          const after = following(url, resolved, request, text, next.cursor, ahead)
          return after === undefined ? Effect.void : readAheadFrom(url, resolved, request, after, ahead)
        })
      if (readAhead.has(next.key)) {
        const inAlready = readAhead.arrived(next.key)
        return inAlready === undefined ? Effect.void : chain(inAlready.body.text)
      }
      return readAhead.start(
        next.key,
        ahead,
        // Its own span (under this page's), so a trace shows which request was made ahead and for what.
        Effect.withSpan(
          Effect.flatMap(Clock.currentTimeMillis, (requestedAt) =>
            Effect.flatMap(runner.getOnce("EventList", url, next.params), (body) =>
              Effect.as(chain(body.text), { body, requestedAt })
            )
          ),
          "FlowcoreHttp.readAhead",
          { attributes: { "flowcore.time_bucket": request.timeBucket, "flowcore.page_size": ahead } }
        )
      )
    })

  /**
   * Hands out the next part of a page read whole, and keeps the rest of it for the call that asks for it. No request
   * is made, so this runs outside the FlowcoreHttp.fetchPage span, under the caller's.
   */
  const servePart = (request: PageRequest, part: Part): Effect.Effect<EventPage, DataSourceError> => {
    let taken: ReturnType<SplitPage["take"]>
    try {
      taken = part.page.take(part.next, request.pageSize)
    } catch {
      return Effect.fail(notJson("EventList", part.body))
    }
    return Effect.flatMap(validateEvents("EventList", taken.events), (events) => {
      const responsePending = readAhead.onItsWay(part.inFlight)
      const last = events[events.length - 1]
      if (last === undefined || part.page.remaining(taken.next) === 0) {
        // The last part: read the server's cursor now, as taking the parts may have corrected the page's layout.
        return Effect.map(
          cursorAfter(part.body, part.page),
          (nextCursor): EventPage => ({
            events,
            nextCursor,
            sizeBytes: taken.length,
            readAhead: nextCursor === undefined ? undefined : part.serverReadAhead,
            requestedAt: part.requestedAt,
            responsePending
          })
        )
      }
      const nextCursor = `${PART_CURSOR}${last.eventId}`
      parts.set(partKey(request, nextCursor), { ...part, next: taken.next })
      return Effect.succeed<EventPage>({
        events,
        nextCursor,
        sizeBytes: taken.length,
        // The next part is already here: like a page read ahead, it is worth waiting for room for (a smaller one
        // would cost a call of its own and save no round trip).
        readAhead:
          request.readAhead === undefined ? undefined : Math.min(request.readAhead, part.page.remaining(taken.next)),
        requestedAt: part.requestedAt,
        responsePending
      })
    })
  }

  const fetchFromServer = Effect.fn("FlowcoreHttp.fetchPage")(function* (request: PageRequest) {
    yield* Effect.annotateCurrentSpan({
      "flowcore.flow_type": source.flowType,
      "flowcore.event_type_count": source.eventTypes.length,
      "flowcore.time_bucket": request.timeBucket,
      "flowcore.page_size": request.pageSize
    })
    const resolved = yield* resolve
    const base = yield* eventSourceOrigin
    const url = `${base}/api/v1/events`
    let cursor = request.cursor === "" ? undefined : request.cursor
    let afterEventId = request.afterEventId
    if (cursor?.startsWith(PART_CURSOR)) {
      // Not kept (another pump sharing this layer took it, or newer parts pushed it out): the cursor names the last
      // event handed out, so the server reads on from there.
      afterEventId = cursor.slice(PART_CURSOR.length)
      cursor = undefined
    }
    const positioned: PageRequest = { ...request, cursor, afterEventId }
    // Pages larger than the caller can take are read whole and handed out in parts (see PageSplit).
    const readSize = Math.max(request.pageSize, request.readPageSize ?? 0)
    const inParts = readSize > request.pageSize
    const params = eventListParams(resolved, positioned, cursor, readSize)
    const early = yield* readAhead.take(requestKey(url, params), readSize)
    const requestedAt = early?.requestedAt ?? (inParts ? yield* Clock.currentTimeMillis : undefined)
    const body = early?.body ?? (yield* runner.get("EventList", url, params))
    // The next page goes out before this one is parsed (see ReadAhead); its body waits as text until asked for.
    const ahead = request.readAhead === undefined || request.readAhead < 1 ? 0 : inParts ? readSize : request.readAhead
    const next = ahead < 1 ? undefined : following(url, resolved, positioned, body.text, cursor, ahead)
    if (next !== undefined) {
      yield* readAheadFrom(url, resolved, positioned, next, ahead)
      // The HTTP client writes the request from a microtask / next tick: let it, before parsing holds the thread.
      yield* Effect.yieldNow
    }
    const decoded = inParts ? decodeInParts(body) : decodeWhole(body)
    const page = yield* next === undefined
      ? decoded
      : Effect.onError(decoded, () => Effect.sync(() => readAhead.drop(next.key)))
    const nextCursor = page.nextCursor === "" ? undefined : page.nextCursor
    const readingAhead = next !== undefined && nextCursor === next.cursor
    if (next !== undefined && !readingAhead) readAhead.drop(next.key)
    let inFlight = readingAhead ? next.key : undefined
    // The end of a bucket whose hour is over: the caller reads the next bucket from its start, so that page goes out
    // now, as the next page of a bucket does (and is handed out in parts if the buffer has less room by then).
    if (nextCursor === undefined && ahead >= 1 && request.followingBucket !== undefined) {
      const first = firstPageOf(url, resolved, positioned, request.followingBucket, ahead)
      yield* readAheadFrom(url, resolved, first.request, first.page, ahead)
      inFlight = first.page.key
    }
    const served: EventPage =
      page.split === undefined
        ? {
            events: page.events,
            nextCursor,
            sizeBytes: body.bytes,
            readAhead: readingAhead ? ahead : undefined,
            requestedAt,
            responsePending: readAhead.onItsWay(inFlight)
          }
        : yield* servePart(positioned, {
            page: page.split,
            next: 0,
            requestedAt,
            body,
            serverReadAhead: readingAhead ? ahead : undefined,
            inFlight
          })
    yield* Effect.annotateCurrentSpan({
      "flowcore.event_count": served.events.length,
      "flowcore.has_next_cursor": served.nextCursor !== undefined
    })
    return served
  })

  const fetchPage = (request: PageRequest): Effect.Effect<EventPage, DataSourceError> => {
    const cursor = request.cursor
    const part = cursor?.startsWith(PART_CURSOR) === true ? parts.take(partKey(request, cursor)) : undefined
    return part === undefined ? fetchFromServer(request) : servePart(request, part)
  }

  const translateTenant = Effect.gen(function* () {
    const body = yield* runner
      .get(
        "TenantTranslateNameToId",
        `${origin(FlowcoreHosts.tenant)}/api/v1/tenants/translate-name-to-id/${encodeURIComponent(source.tenant)}`,
        []
      )
      .pipe(
        Effect.mapError((error) =>
          error.status === 404
            ? notFound("TenantTranslateNameToId", `tenant "${source.tenant}" does not exist (HTTP 404)`)
            : error
        )
      )
    return (yield* decodeBody("TenantTranslateNameToId", body, Named)).id
  })
  const tenantIdCache = yield* successCache((_: "tenant") => translateTenant, Duration.infinity)

  return DataSource.of({ resolve, timeBuckets, fetchPage, tenantId: Cache.get(tenantIdCache, "tenant") })
})

export const FlowcoreHttp: {
  /** Needs an HttpClient (effect/http) and PumpMetrics (to count commands). */
  readonly layer: (options: FlowcoreHttpOptions) => Layer.Layer<DataSource, never, HttpClient.HttpClient | PumpMetrics>
  /** Same, with the Node HTTP client from @effect/platform-node (keep-alive connection reuse) provided. */
  readonly layerNode: (options: FlowcoreHttpOptions) => Layer.Layer<DataSource, never, PumpMetrics>
} = {
  layer: (options) => Layer.effect(DataSource, make(options)),
  layerNode: (options) => Layer.effect(DataSource, make(options)).pipe(Layer.provide(NodeHttpClient.layerUndici))
}
