/**
 * The event store: per event type, per time bucket, events kept sorted by `sortKey(eventId)` (time, then clock, then
 * node). Appends in time order are O(1); late events are placed by binary search; a batch is sorted once and merged.
 * Pages seek by binary search in each event type and merge the k sorted runs.
 */
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"

/** The nine fields of protocol §4, serialized in wire order. */
export type StoredEvent = FlowcoreEvent

export interface Keyed {
  readonly key: string
  readonly event: StoredEvent
}

/** First index whose key is >= `key`. */
const lowerBound = (keys: ReadonlyArray<string>, key: string): number => {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((keys[mid] as string) < key) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** First index whose key is > `key`. */
const upperBound = (keys: ReadonlyArray<string>, key: string): number => {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((keys[mid] as string) <= key) lo = mid + 1
    else hi = mid
  }
  return lo
}

const byKey = (a: Keyed, b: Keyed) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

class BucketEvents {
  keys: Array<string> = []
  events: Array<StoredEvent> = []

  insert(key: string, event: StoredEvent): void {
    const n = this.keys.length
    if (n === 0 || (this.keys[n - 1] as string) < key) {
      this.keys.push(key)
      this.events.push(event)
      return
    }
    const at = upperBound(this.keys, key)
    this.keys.splice(at, 0, key)
    this.events.splice(at, 0, event)
  }

  /** Inserts many at once: O(m log m) to sort them, then one append or one linear merge. */
  insertAll(items: Array<Keyed>): void {
    let sorted = true
    for (let i = 1; i < items.length; i++) {
      if ((items[i - 1] as Keyed).key > (items[i] as Keyed).key) {
        sorted = false
        break
      }
    }
    if (!sorted) items.sort(byKey)
    const first = items[0]
    if (first === undefined) return
    const n = this.keys.length
    if (n === 0 || (this.keys[n - 1] as string) < first.key) {
      for (const item of items) {
        this.keys.push(item.key)
        this.events.push(item.event)
      }
      return
    }
    const keys: Array<string> = new Array(n + items.length)
    const events: Array<StoredEvent> = new Array(n + items.length)
    let i = 0
    let j = 0
    let o = 0
    while (i < n || j < items.length) {
      const item = items[j]
      if (item !== undefined && (i >= n || item.key < (this.keys[i] as string))) {
        keys[o] = item.key
        events[o++] = item.event
        j++
      } else {
        keys[o] = this.keys[i] as string
        events[o++] = this.events[i] as StoredEvent
        i++
      }
    }
    this.keys = keys
    this.events = events
  }
}

/** All events of one event type. */
export class EventStream {
  readonly #buckets = new Map<string, BucketEvents>()
  #lastName: string | undefined
  #last: BucketEvents | undefined
  /** Buckets that hold events, ascending (fixed-width strings, so string order is time order). */
  readonly buckets: Array<string> = []
  #count = 0

  get count(): number {
    return this.#count
  }

  #bucket(timeBucket: string): BucketEvents {
    if (timeBucket === this.#lastName) return this.#last as BucketEvents
    let bucket = this.#buckets.get(timeBucket)
    if (bucket === undefined) {
      bucket = new BucketEvents()
      this.#buckets.set(timeBucket, bucket)
      const n = this.buckets.length
      if (n === 0 || (this.buckets[n - 1] as string) < timeBucket) this.buckets.push(timeBucket)
      else this.buckets.splice(lowerBound(this.buckets, timeBucket), 0, timeBucket)
    }
    this.#lastName = timeBucket
    this.#last = bucket
    return bucket
  }

  /** Appends when the event sorts after everything in its bucket (O(1)); returns false, storing nothing, otherwise. */
  append(key: string, event: StoredEvent): boolean {
    const bucket = this.#bucket(event.timeBucket)
    const keys = bucket.keys
    const n = keys.length
    if (n > 0 && (keys[n - 1] as string) >= key) return false
    keys.push(key)
    bucket.events.push(event)
    this.#count++
    return true
  }

  insert(key: string, event: StoredEvent): void {
    this.#bucket(event.timeBucket).insert(key, event)
    this.#count++
  }

  insertAll(items: ReadonlyArray<Keyed>): void {
    const groups = new Map<string, Array<Keyed>>()
    let currentBucket: string | undefined
    let current: Array<Keyed> = []
    for (const item of items) {
      const timeBucket = item.event.timeBucket
      if (timeBucket !== currentBucket) {
        currentBucket = timeBucket
        const group = groups.get(timeBucket)
        if (group === undefined) {
          current = []
          groups.set(timeBucket, current)
        } else {
          current = group
        }
      }
      current.push(item)
    }
    for (const [timeBucket, group] of groups) this.#bucket(timeBucket).insertAll(group)
    this.#count += items.length
  }

  eventsIn(timeBucket: string): { readonly keys: ReadonlyArray<string>; readonly events: ReadonlyArray<StoredEvent> } {
    return this.#buckets.get(timeBucket) ?? EMPTY
  }
}

const EMPTY = { keys: [], events: [] } as const

export interface LowerBound {
  readonly key: string
  readonly inclusive: boolean
}

export interface Page {
  readonly events: ReadonlyArray<StoredEvent>
  /** Key of the last returned event, when there are more matching events after it. */
  readonly continueAfter: string | undefined
}

/** One page of the merged, time-ordered events of `streams` in `timeBucket`, within the bounds. */
export const pageOf = (
  streams: ReadonlyArray<EventStream>,
  timeBucket: string,
  from: LowerBound | undefined,
  toKey: string | undefined,
  pageSize: number
): Page => {
  const runs: Array<{ keys: ReadonlyArray<string>; events: ReadonlyArray<StoredEvent>; at: number; end: number }> = []
  for (const stream of streams) {
    const { keys, events } = stream.eventsIn(timeBucket)
    if (keys.length === 0) continue
    const at = from === undefined ? 0 : from.inclusive ? lowerBound(keys, from.key) : upperBound(keys, from.key)
    const end = toKey === undefined ? keys.length : upperBound(keys, toKey)
    if (at < end) runs.push({ keys, events, at, end })
  }
  const out: Array<StoredEvent> = []
  let lastKey: string | undefined
  if (runs.length === 1) {
    const run = runs[0] as (typeof runs)[number]
    const stop = Math.min(run.end, run.at + pageSize)
    for (let i = run.at; i < stop; i++) out.push(run.events[i] as StoredEvent)
    lastKey = run.keys[stop - 1]
    return { events: out, continueAfter: stop < run.end ? lastKey : undefined }
  }
  while (out.length < pageSize) {
    let best = -1
    let bestKey = ""
    for (let r = 0; r < runs.length; r++) {
      const run = runs[r] as (typeof runs)[number]
      if (run.at >= run.end) continue
      const k = run.keys[run.at] as string
      if (best === -1 || k < bestKey) {
        best = r
        bestKey = k
      }
    }
    if (best === -1) break
    const run = runs[best] as (typeof runs)[number]
    out.push(run.events[run.at] as StoredEvent)
    run.at++
    lastKey = bestKey
  }
  const more = runs.some((run) => run.at < run.end)
  return { events: out, continueAfter: more ? lastKey : undefined }
}

/** The union of the streams' buckets within the bounds (inclusive), ascending. */
export const bucketsOf = (
  streams: ReadonlyArray<EventStream>,
  from: string | undefined,
  to: string | undefined
): ReadonlyArray<string> => {
  const window = (list: ReadonlyArray<string>) =>
    list.slice(from === undefined ? 0 : lowerBound(list, from), to === undefined ? list.length : upperBound(list, to))
  if (streams.length === 1) return window((streams[0] as EventStream).buckets)
  const union = new Set<string>()
  for (const stream of streams) for (const bucket of window(stream.buckets)) union.add(bucket)
  return [...union].sort()
}
