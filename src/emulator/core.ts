/**
 * The emulator's state and its one write path: resolving names to resources (creating them when `autoCreate` is on),
 * minting event ids, storing, persisting and notifying. HTTP ingestion and the in-process `ingest` API both go here.
 */
import { randomFillSync } from "node:crypto"
import { Predicate } from "effect"
import * as TimeBucket from "../domain/TimeBucket.ts"
import { sortKey, TimeUuid } from "../domain/TimeUuid.ts"
import { EmulatorError } from "./config.ts"
import { type Journal, type JournalLine, serialize } from "./journal.ts"
import {
  type DataCoreJson,
  type EventTypeJson,
  type FlowTypeJson,
  Registry,
  RegistryConflict,
  type TenantRecord
} from "./registry.ts"
import { EventStream, type Keyed, type StoredEvent } from "./store.ts"

export interface IngestInput {
  /** Names; `dataCore` may also be the data core's id. */
  readonly tenant: string
  readonly dataCore: string
  readonly flowType: string
  readonly eventType: string
  readonly payload: Record<string, unknown>
  readonly metadata?: Record<string, unknown>
  /** Decides the bucket and the id's timestamp; default: the ingest time. */
  readonly eventTime?: Date | string
  readonly validTime?: Date | string
}

export interface IngestTarget {
  readonly tenant: string
  readonly dataCore: string
  readonly flowType: string
  readonly eventType: string
}

/** An event that passed validation, ready to be minted. */
export interface IngestItem {
  readonly payload: Readonly<Record<string, unknown>>
  readonly metadata: Readonly<Record<string, unknown>>
  readonly eventTime: Date | undefined
  readonly validTime: string | undefined
}

export interface Resolved {
  readonly tenant: TenantRecord
  readonly dataCore: DataCoreJson
  readonly flowType: FlowTypeJson
  readonly eventType: EventTypeJson
  readonly stream: EventStream
}

export interface Rejection {
  readonly status: 400 | 404 | 409
  readonly message: string
}

/** Receives every stored event, after it is stored and persisted. */
export interface NotificationSink {
  readonly active: boolean
  readonly publish: (resolved: Resolved, event: StoredEvent) => void
}

export const isRejection = (value: unknown): value is Rejection => Predicate.hasProperty(value, "status")

/** Random node (6) and clock (2) bytes for ids, drawn from pools refilled once per 4096 ids. */
class RandomPool {
  static readonly IDS = 4096
  #nodes = new Uint8Array(0)
  #clocks = new Uint8Array(0)
  #at = RandomPool.IDS

  /** Advances to the next id's bytes; then read `node()` and `clock()`. */
  next(): void {
    if (++this.#at >= RandomPool.IDS) {
      this.#nodes = randomFillSync(new Uint8Array(6 * RandomPool.IDS))
      this.#clocks = randomFillSync(new Uint8Array(2 * RandomPool.IDS))
      this.#at = 0
    }
  }
  node(): Uint8Array {
    return this.#nodes.subarray(this.#at * 6, this.#at * 6 + 6)
  }
  clock(): Uint8Array {
    return this.#clocks.subarray(this.#at * 2, this.#at * 2 + 2)
  }
}

const parseInstant = (value: Date | string, field: string): Date | Rejection => {
  const date = value instanceof Date ? value : new Date(value)
  return Number.isNaN(date.getTime())
    ? { status: 400, message: `${field} must be an ISO-8601 date-time, got ${JSON.stringify(String(value))}` }
    : date
}

/** Shared by events ingested without metadata: they are only ever serialised, never handed out to be mutated. */
const NO_METADATA: Readonly<Record<string, unknown>> = Object.freeze({})

/** Checks an in-process ingest input; the error names the field. */
export const toItem = (input: IngestInput, index: number | undefined): IngestItem | Rejection => {
  const where = () => (index === undefined ? "input" : `inputs[${index}]`)
  if (!Predicate.isObject(input.payload) || Predicate.isDate(input.payload)) {
    return { status: 400, message: `${where()}.payload must be a JSON object (not an array, null or a primitive)` }
  }
  if (input.metadata !== undefined && !Predicate.isObject(input.metadata)) {
    return { status: 400, message: `${where()}.metadata must be an object` }
  }
  let eventTime: Date | undefined
  if (input.eventTime !== undefined) {
    const parsed = parseInstant(input.eventTime, `${where()}.eventTime`)
    if (isRejection(parsed)) return parsed
    eventTime = parsed
  }
  let validTime: string | undefined
  if (input.validTime !== undefined) {
    const parsed = parseInstant(input.validTime, `${where()}.validTime`)
    if (isRejection(parsed)) return parsed
    validTime = input.validTime instanceof Date ? parsed.toISOString() : input.validTime
  }
  return { payload: input.payload, metadata: input.metadata ?? NO_METADATA, eventTime, validTime }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** Lowercase 8-4-4-4-12 form of 16 bytes (the same text as `TimeUuid.toString`, without its per-call arrays). */
const formatUuid = (b: Uint8Array): string => {
  const h = (i: number) => HEX[b[i] as number] as string
  return `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`
}

/** `sortKey(formatUuid(b))` (time_hi, time_mid, time_low, clock, node) built straight from the bytes. */
const sortKeyOf = (b: Uint8Array): string => {
  const h = (i: number) => HEX[b[i] as number] as string
  return `${(HEX[b[6] as number] as string)[1]}${h(7)}${h(4)}${h(5)}${h(0)}${h(1)}${h(2)}${h(3)}${h(8)}${h(9)}${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`
}

const GREGORIAN_OFFSET_MS = 12_219_292_800_000
const HOUR_MS = 3_600_000

/**
 * The Unix millisecond of a v1 id, in exact double arithmetic instead of BigInt: with t = hi * 2^32 + lo and
 * 2^32 = 10000 * 429496 + 7296, floor(t / 10000) = hi * 429496 + floor((hi * 7296 + lo) / 10000), every term < 2^53.
 */
const epochMillisOf = (b: Uint8Array): number => {
  const hi = (((b[6] as number) & 0x0f) * 256 + (b[7] as number)) * 65_536 + (b[4] as number) * 256 + (b[5] as number)
  const lo = (b[0] as number) * 16_777_216 + (b[1] as number) * 65_536 + (b[2] as number) * 256 + (b[3] as number)
  return hi * 429_496 + Math.floor((hi * 7_296 + lo) / 10_000) - GREGORIAN_OFFSET_MS
}

export interface EmulatorStateOptions {
  readonly autoCreate: boolean
}

export class EmulatorState {
  readonly registry: Registry
  readonly autoCreate: boolean
  readonly #streams = new Map<string, EventStream>()
  readonly #resolved = new Map<string, Resolved>()
  readonly #random = new RandomPool()
  #pending: Array<string> = []
  #journal: Journal | undefined
  #sink: NotificationSink = { active: false, publish: () => {} }
  #bucketHour = Number.NaN
  #bucketName = ""

  constructor(options: EmulatorStateOptions) {
    this.autoCreate = options.autoCreate
    this.registry = new Registry((line) => {
      this.#pending.push(serialize(line))
    })
  }

  attachJournal(journal: Journal): void {
    this.#journal = journal
  }

  attachSink(sink: NotificationSink): void {
    this.#sink = sink
  }

  /** Writes what the registry created since the last flush (resources created by config or lookups). */
  flush(): void {
    if (this.#pending.length === 0) return
    const text = this.#pending.join("")
    this.#pending = []
    this.#journal?.append(text)
  }

  /** Events stored across all event types. */
  get eventCount(): number {
    let total = 0
    for (const stream of this.#streams.values()) total += stream.count
    return total
  }

  /** The store of an event type (every event type has one, even before its first event). */
  streamOf(eventTypeId: string): EventStream {
    let stream = this.#streams.get(eventTypeId)
    if (stream === undefined) {
      stream = new EventStream()
      this.#streams.set(eventTypeId, stream)
    }
    return stream
  }

  /** Stores replayed events without persisting or notifying them again; names the first dangling line. */
  restore(
    lines: ReadonlyArray<{ readonly line: Extract<JournalLine, { k: "event" }>; readonly lineNumber: number }>
  ): string | undefined {
    const groups = new Map<string, Array<Keyed>>()
    for (const { line, lineNumber } of lines) {
      if (this.registry.eventTypeById(line.eventTypeId) === undefined) {
        return `line ${lineNumber}: event ${line.event.eventId} belongs to unknown event type ${line.eventTypeId}`
      }
      const group = groups.get(line.eventTypeId)
      const item = { key: sortKey(line.event.eventId), event: line.event }
      if (group === undefined) groups.set(line.eventTypeId, [item])
      else group.push(item)
    }
    for (const [eventTypeId, items] of groups) this.streamOf(eventTypeId).insertAll(items)
    return undefined
  }

  /** Finds (or with autoCreate creates) the resources of an ingest target. */
  resolve(target: IngestTarget): Resolved | Rejection {
    const cacheKey = `${target.tenant}\u0000${target.dataCore}\u0000${target.flowType}\u0000${target.eventType}`
    const cached = this.#resolved.get(cacheKey)
    if (cached !== undefined) return cached
    const registry = this.registry
    const create = this.autoCreate
    const missing = (what: string): Rejection => ({
      status: 404,
      message: `${what} does not exist (the emulator runs with autoCreate off: declare it in the config)`
    })
    try {
      let tenant = registry.tenantByName(target.tenant)
      if (tenant === undefined) {
        if (!create) return missing(`Tenant "${target.tenant}"`)
        tenant = registry.createTenant(target.tenant)
      }
      let dataCore = registry.dataCoreByIdOrName(tenant.id, target.dataCore)
      if (dataCore === undefined) {
        if (!create) return missing(`Data core "${target.dataCore}" of tenant "${tenant.name}"`)
        dataCore = registry.createDataCore(tenant, target.dataCore)
      }
      let flowType = registry.flowTypeByName(dataCore.id, target.flowType)
      if (flowType === undefined) {
        if (!create) return missing(`Flow type "${target.flowType}" of data core "${dataCore.name}"`)
        flowType = registry.createFlowType(dataCore, target.flowType)
      }
      let eventType = registry.eventTypeByName(flowType.id, target.eventType)
      if (eventType === undefined) {
        if (!create) return missing(`Event type "${target.eventType}" of flow type "${flowType.name}"`)
        eventType = registry.createEventType(flowType, target.eventType)
      }
      const resolved: Resolved = { tenant, dataCore, flowType, eventType, stream: this.streamOf(eventType.id) }
      this.#resolved.set(cacheKey, resolved)
      return resolved
    } catch (error) {
      if (error instanceof RegistryConflict) return { status: 409, message: error.message }
      throw error
    }
  }

  /** The bucket of an instant; consecutive events mostly share an hour, so the last answer is reused. */
  #bucketOf(ms: number): string {
    const hour = ms - (((ms % HOUR_MS) + HOUR_MS) % HOUR_MS)
    if (hour !== this.#bucketHour) {
      this.#bucketHour = hour
      this.#bucketName = TimeBucket.fromDate(hour)
    }
    return this.#bucketName
  }

  /** Sort key of the event `#mint` returned last (a field, so minting allocates no wrapper per event). */
  #mintedKey = ""

  #mint(resolved: Resolved, item: IngestItem, ingestedAt: string): StoredEvent {
    const random = this.#random
    random.next()
    const node = random.node()
    const clock = random.clock()
    let bytes: Uint8Array
    let bucket: string
    if (item.eventTime === undefined) {
      // `now()` shares its per-millisecond tick counter with every `TimeUuid.now()` in this process, so an event
      // ingested after a reader took "now" as its starting point is strictly after it.
      bytes = TimeUuid.now(node, clock).bytes
      bucket = this.#bucketOf(epochMillisOf(bytes))
    } else {
      bytes = TimeUuid.fromDate(item.eventTime, undefined, node, clock).bytes
      bucket = this.#bucketOf(item.eventTime.getTime())
    }
    const event: StoredEvent = {
      eventId: formatUuid(bytes),
      timeBucket: bucket,
      tenant: resolved.tenant.name,
      dataCoreId: resolved.dataCore.id,
      flowType: resolved.flowType.name,
      eventType: resolved.eventType.name,
      metadata: item.metadata,
      payload: item.payload,
      validTime: item.validTime ?? ingestedAt
    }
    this.#mintedKey = sortKeyOf(bytes)
    return event
  }

  /** Stores validated items for one target; returns their ids in input order. */
  ingest(target: IngestTarget, items: ReadonlyArray<IngestItem>): ReadonlyArray<string> | Rejection {
    const resolved = this.resolve(target)
    if (isRejection(resolved)) {
      this.flush()
      return resolved
    }
    return this.#store(
      items.map(() => resolved),
      items
    )
  }

  /** The in-process API: validates everything first, so a bad input stores nothing; throws `EmulatorError`. */
  ingestInputs(inputs: ReadonlyArray<IngestInput>): ReadonlyArray<string> {
    const items: Array<IngestItem> = new Array(inputs.length)
    const targets: Array<Resolved> = new Array(inputs.length)
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i] as IngestInput
      const item = toItem(input, inputs.length === 1 ? undefined : i)
      if (isRejection(item)) throw new EmulatorError({ message: `ingest: ${item.message}` })
      items[i] = item
    }
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i] as IngestInput
      const previous = i > 0 ? (inputs[i - 1] as IngestInput) : undefined
      // Seeding loops usually repeat one target: skip the lookup when it is the same as the previous input's.
      const same =
        previous !== undefined &&
        input.tenant === previous.tenant &&
        input.dataCore === previous.dataCore &&
        input.flowType === previous.flowType &&
        input.eventType === previous.eventType
      const resolved = same ? (targets[i - 1] as Resolved) : this.resolve(input)
      if (isRejection(resolved)) {
        this.flush()
        throw new EmulatorError({ message: `ingest: ${resolved.message}` })
      }
      targets[i] = resolved
    }
    return this.#store(targets, items)
  }

  #store(targets: ReadonlyArray<Resolved>, items: ReadonlyArray<IngestItem>): ReadonlyArray<string> {
    const ingestedAt = new Date().toISOString()
    const ids: Array<string> = new Array(items.length)
    const events: Array<StoredEvent> = new Array(items.length)
    const journal = this.#journal
    // In-order events are appended as they are minted; only late ones are sorted and merged, once per stream.
    let late: Map<EventStream, Array<Keyed>> | undefined
    for (let i = 0; i < items.length; i++) {
      const resolved = targets[i] as Resolved
      const event = this.#mint(resolved, items[i] as IngestItem, ingestedAt)
      const key = this.#mintedKey
      events[i] = event
      ids[i] = event.eventId
      if (journal !== undefined) {
        this.#pending.push(serialize({ k: "event", eventTypeId: resolved.eventType.id, event }))
      }
      const stream = resolved.stream
      if (stream.append(key, event)) continue
      if (items.length === 1) {
        stream.insert(key, event)
        continue
      }
      late ??= new Map()
      const list = late.get(stream)
      if (list === undefined) late.set(stream, [{ key, event }])
      else list.push({ key, event })
    }
    if (late !== undefined) for (const [stream, list] of late) stream.insertAll(list)
    this.flush()
    const sink = this.#sink
    if (sink.active)
      for (let i = 0; i < events.length; i++) sink.publish(targets[i] as Resolved, events[i] as StoredEvent)
    return ids
  }
}
