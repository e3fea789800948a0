/**
 * A deterministic, in-process DataSource for tests — ours and our users'. Events can be given up front and appended
 * while a pump runs; pages use opaque cursors with Flowcore's semantics (`afterEventId` exclusive, `toEventId`
 * inclusive, time order of the v1 ids). Faults can be scripted: fail the next N calls, delay every call, serve a
 * malformed page, or make an event visible only from a later instant (on the Effect Clock, so TestClock drives it).
 */
import { Clock, Context, Duration, Effect, Layer } from "effect"
import { DataSourceError } from "../../domain/errors.ts"
import { type FlowcoreEvent, validateEvents } from "../../domain/FlowcoreEvent.ts"
import * as TimeBucket from "../../domain/TimeBucket.ts"
import { sortKey, TimeUuid } from "../../domain/TimeUuid.ts"
import { DataSource, type EventPage, type PageRequest, type ResolvedSource } from "../../services/DataSource.ts"

export interface InMemoryEventInput {
  readonly eventType: string
  readonly payload?: Record<string, unknown>
  /** Event time: decides the id's timestamp and the bucket. Default: the Clock's now at append time. */
  readonly at?: Date | number
  readonly metadata?: Record<string, unknown>
  /** Hidden from reads until this epoch ms (on the Effect Clock). */
  readonly visibleAt?: number
}

export interface InMemoryOptions {
  readonly tenant?: string
  readonly dataCore?: string
  readonly flowType?: string
  readonly eventTypes?: ReadonlyArray<string>
  readonly events?: ReadonlyArray<InMemoryEventInput | FlowcoreEvent>
}

export type InMemoryCall = "resolve" | "timeBuckets" | "fetchPage"

export interface InMemoryControl {
  /** Appends events; returns them as stored. */
  readonly append: (
    events: ReadonlyArray<InMemoryEventInput | FlowcoreEvent>
  ) => Effect.Effect<ReadonlyArray<FlowcoreEvent>>
  /** The next `count` calls (of `call`, or any call) fail with `error` (default: a retryable 503). */
  readonly failNext: (
    count: number,
    options?: { readonly call?: InMemoryCall; readonly error?: DataSourceError }
  ) => Effect.Effect<void>
  /** Every call waits this long first (Effect Clock). */
  readonly setDelay: (delay: Duration.Input) => Effect.Effect<void>
  /** The next `count` pages contain an event that fails validation. */
  readonly malformNext: (count: number) => Effect.Effect<void>
  /** Calls made so far, by kind. */
  readonly calls: Effect.Effect<Readonly<Record<InMemoryCall, number>>>
  /** Every page request received, in order. */
  readonly requests: Effect.Effect<ReadonlyArray<PageRequest>>
  /** All stored events (visible or not) in time order. */
  readonly events: Effect.Effect<ReadonlyArray<FlowcoreEvent>>
}

export class InMemoryDataSource extends Context.Service<InMemoryDataSource, InMemoryControl>()(
  "@flowcore/data-pump/InMemoryDataSource"
) {
  /** Provides `DataSource` (for the pump) and `InMemoryDataSource` (to control it from a test). */
  static layer(options: InMemoryOptions = {}): Layer.Layer<DataSource | InMemoryDataSource> {
    return Layer.effectContext(
      Effect.gen(function* () {
        const { dataSource, control } = yield* makeInMemory(options)
        return Context.make(DataSource, dataSource).pipe(Context.add(InMemoryDataSource, control))
      })
    )
  }

  /** Builds a valid Flowcore event for tests; the id is minted from `at`. */
  static event(
    input: InMemoryEventInput & { readonly tenant?: string; readonly dataCoreId?: string; readonly flowType?: string },
    now: number = Date.now()
  ): FlowcoreEvent {
    const at = input.at === undefined ? now : typeof input.at === "number" ? input.at : input.at.getTime()
    return {
      eventId: TimeUuid.fromDate(new Date(at)).toString(),
      timeBucket: TimeBucket.fromDate(at),
      tenant: input.tenant ?? "tenant",
      dataCoreId: input.dataCoreId ?? "data-core",
      flowType: input.flowType ?? "flow-type",
      eventType: input.eventType,
      metadata: input.metadata ?? {},
      payload: input.payload ?? {},
      validTime: new Date(at).toISOString()
    }
  }
}

interface Stored {
  readonly event: FlowcoreEvent
  readonly key: string
  readonly visibleAt: number
  /** Serialized size, computed once at append so pages report bytes like the HTTP source does. */
  readonly bytes: number
}

const isFlowcoreEvent = (value: InMemoryEventInput | FlowcoreEvent): value is FlowcoreEvent =>
  typeof (value as FlowcoreEvent).eventId === "string"

/** Index of the first element whose key is greater than `key` (or >= when `inclusive`). */
const lowerBound = (items: ReadonlyArray<Stored>, key: string, inclusive: boolean): number => {
  let lo = 0
  let hi = items.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const k = (items[mid] as Stored).key
    if (inclusive ? k < key : k <= key) lo = mid + 1
    else hi = mid
  }
  return lo
}

const CURSOR_PREFIX = "mem:"

export const makeInMemory = (options: InMemoryOptions) =>
  Effect.gen(function* () {
    const eventTypes = options.eventTypes ?? ["event-type"]
    const resolved: ResolvedSource = {
      tenant: options.tenant ?? "tenant",
      dataCore: options.dataCore ?? "data-core",
      dataCoreId: options.dataCore ?? "data-core",
      flowType: options.flowType ?? "flow-type",
      flowTypeId: options.flowType ?? "flow-type",
      eventTypes,
      eventTypeIds: eventTypes
    }
    const buckets = new Map<string, Array<Stored>>()
    const all: Array<Stored> = []
    const calls: Record<InMemoryCall, number> = { resolve: 0, timeBuckets: 0, fetchPage: 0 }
    const requests: Array<PageRequest> = []
    const failures: Array<{ call: InMemoryCall | undefined; error: DataSourceError }> = []
    let delay = Duration.zero
    let malformed = 0

    const insert = (list: Array<Stored>, item: Stored) => {
      const last = list[list.length - 1]
      if (last === undefined || last.key < item.key) list.push(item)
      else list.splice(lowerBound(list, item.key, true), 0, item)
    }

    const appendSync = (inputs: ReadonlyArray<InMemoryEventInput | FlowcoreEvent>, now: number) =>
      inputs.map((input) => {
        const event = isFlowcoreEvent(input)
          ? input
          : InMemoryDataSource.event(
              { ...input, tenant: resolved.tenant, dataCoreId: resolved.dataCoreId, flowType: resolved.flowType },
              now
            )
        const stored: Stored = {
          event,
          key: sortKey(event.eventId),
          visibleAt: isFlowcoreEvent(input) ? 0 : (input.visibleAt ?? 0),
          bytes: JSON.stringify(event).length
        }
        let list = buckets.get(event.timeBucket)
        if (list === undefined) {
          list = []
          buckets.set(event.timeBucket, list)
        }
        insert(list, stored)
        insert(all, stored)
        return event
      })

    const initialNow = yield* Clock.currentTimeMillis
    appendSync(options.events ?? [], initialNow)

    const enter = (call: InMemoryCall): Effect.Effect<number, DataSourceError> =>
      Effect.gen(function* () {
        calls[call]++
        if (Duration.isGreaterThan(delay, Duration.zero)) yield* Effect.sleep(delay)
        const index = failures.findIndex((f) => f.call === undefined || f.call === call)
        if (index >= 0) {
          const [failure] = failures.splice(index, 1)
          if (failure !== undefined) return yield* Effect.fail(failure.error)
        }
        return yield* Clock.currentTimeMillis
      })

    const wanted = new Set(eventTypes)

    const dataSource = DataSource.of({
      resolve: Effect.as(enter("resolve"), resolved),
      timeBuckets: () =>
        Effect.map(enter("timeBuckets"), (now) =>
          [...buckets.entries()]
            .filter(([, list]) => list.some((s) => s.visibleAt <= now && wanted.has(s.event.eventType)))
            .map(([bucket]) => bucket as TimeBucket.TimeBucket)
            .sort()
        ),
      fetchPage: (request: PageRequest): Effect.Effect<EventPage, DataSourceError> =>
        Effect.gen(function* () {
          requests.push(request)
          const now = yield* enter("fetchPage")
          const list = buckets.get(request.timeBucket) ?? []
          let start = 0
          if (request.cursor !== undefined) {
            if (!request.cursor.startsWith(CURSOR_PREFIX)) {
              return yield* new DataSourceError({
                command: "EventList",
                kind: "Status",
                status: 400,
                retryable: false,
                message: `EventList: unknown cursor ${JSON.stringify(request.cursor)}`
              })
            }
            start = lowerBound(list, request.cursor.slice(CURSOR_PREFIX.length), false)
          } else if (request.afterEventId !== undefined) {
            start = lowerBound(list, sortKey(request.afterEventId), false)
          }
          const toKey = request.toEventId === undefined ? undefined : sortKey(request.toEventId)
          const events: Array<FlowcoreEvent> = []
          let i = start
          let lastKey: string | undefined
          let sizeBytes = 0
          for (; i < list.length && events.length < request.pageSize; i++) {
            const stored = list[i] as Stored
            if (toKey !== undefined && stored.key > toKey) break
            // An event not yet visible ends the page: later ones must not overtake it.
            if (stored.visibleAt > now) break
            lastKey = stored.key
            if (wanted.has(stored.event.eventType)) {
              events.push(stored.event)
              sizeBytes += stored.bytes
            }
          }
          const next = list[i]
          const more =
            next !== undefined &&
            next.visibleAt <= now &&
            (toKey === undefined || next.key <= toKey) &&
            lastKey !== undefined
          if (malformed > 0) {
            malformed--
            const raw: Array<unknown> = [...events, { eventId: "not-a-uuid", payload: [] }]
            return yield* Effect.as(validateEvents("EventList", raw), { events })
          }
          return {
            events,
            nextCursor: more ? `${CURSOR_PREFIX}${lastKey}` : undefined,
            sizeBytes
          }
        })
    })

    const control: InMemoryControl = {
      append: (events) => Effect.map(Clock.currentTimeMillis, (now) => appendSync(events, now)),
      failNext: (count, failOptions) =>
        Effect.sync(() => {
          const error =
            failOptions?.error ??
            new DataSourceError({
              command: "InMemory",
              kind: "Status",
              status: 503,
              retryable: true,
              message: "InMemory: scripted failure (503)"
            })
          for (let n = 0; n < count; n++) failures.push({ call: failOptions?.call, error })
        }),
      setDelay: (d) =>
        Effect.sync(() => {
          delay = Duration.fromInputUnsafe(d)
        }),
      malformNext: (count) =>
        Effect.sync(() => {
          malformed += count
        }),
      calls: Effect.sync(() => ({ ...calls })),
      requests: Effect.sync(() => [...requests]),
      events: Effect.sync(() => all.map((s) => s.event))
    }

    return { dataSource, control }
  })
