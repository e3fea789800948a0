/**
 * Version-1 time UUIDs as Flowcore uses them for event ids (API-compatible with `@flowcore/time-uuid`).
 *
 * The 60-bit timestamp counts 100 ns ticks since 1582-10-15: `(unixMs + 12219292800000) * 10000 + ticks`.
 * Bytes 0-3 hold its low 32 bits, 4-5 the next 16, 6-7 the top 12 with the version nibble, 8-9 the clock sequence
 * (variant bits `10`), 10-15 the node. The string starts with the *low* bits, so string order is not time order:
 * compare with `TimeUuid.compare` (or `sortKey`) instead.
 */
import { randomFillSync } from "node:crypto"
import { InvalidTimeUuid } from "./errors.ts"

const GREGORIAN_OFFSET_MS = 12_219_292_800_000n
const TICKS_PER_MS = 10_000n
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** Process-wide counter used when `fromDate` is given no ticks, as in the original library. */
let globalTicks = 0
/** Per-millisecond counter of `now()`. */
let nowMillis = -1
let nowTicks = 0

const nextGlobalTicks = (): number => {
  const ticks = globalTicks
  globalTicks = (globalTicks + 1) % 10_000
  return ticks
}

/** Random bytes drawn from a pool refilled in bulk: one system call per 512 ids instead of one per id. */
const pool = new Uint8Array(4096)
let poolOffset = pool.length
const randomBytes = (length: number): Uint8Array => {
  if (poolOffset + length > pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const bytes = pool.slice(poolOffset, poolOffset + length)
  poolOffset += length
  return bytes
}

const toBytes = (value: Uint8Array | string | undefined, length: number, name: string): Uint8Array => {
  if (value === undefined) return randomBytes(length)
  if (typeof value === "string") {
    if (value.length !== length) throw new TypeError(`TimeUuid ${name} must be ${length} characters`)
    return Uint8Array.from(value, (c) => c.charCodeAt(0) & 0xff)
  }
  if (value.length !== length) throw new TypeError(`TimeUuid ${name} must be ${length} bytes`)
  return value
}

const invalid = (value: string, why: string) =>
  new InvalidTimeUuid({ value, message: `Invalid time UUID ${JSON.stringify(value)}: ${why}` })

export class TimeUuid {
  /** The 16 bytes of the UUID. */
  readonly bytes: Uint8Array
  #string: string | undefined

  private constructor(bytes: Uint8Array) {
    this.bytes = bytes
  }

  /**
   * A time UUID for `date`. Without `ticks` (or with ticks >= 10000) a process-wide counter supplies them, so two
   * calls with the same date give different, increasing ids. Node and clock are random unless given.
   */
  static fromDate(date: Date, ticks?: number, node?: Uint8Array | string, clock?: Uint8Array | string): TimeUuid {
    const ms = date.getTime()
    if (!Number.isFinite(ms)) throw new TypeError("TimeUuid.fromDate needs a valid Date")
    const t = ticks === undefined || ticks >= 10_000 || ticks < 0 ? nextGlobalTicks() : Math.trunc(ticks)
    return TimeUuid.fromTimestamp((BigInt(ms) + GREGORIAN_OFFSET_MS) * TICKS_PER_MS + BigInt(t), node, clock)
  }

  /** A time UUID for the current instant; ids minted in the same millisecond get increasing ticks. */
  static now(node?: Uint8Array | string, clock?: Uint8Array | string): TimeUuid {
    const date = new Date()
    const ms = date.getTime()
    if (ms !== nowMillis) {
      nowMillis = ms
      nowTicks = 0
    }
    const ticks = nowTicks < 10_000 ? nowTicks++ : undefined
    return TimeUuid.fromDate(date, ticks, node, clock)
  }

  /** The smallest id of the given instant (node and clock bytes as the original's `min`). */
  static min(date: Date, ticks = 0): TimeUuid {
    return TimeUuid.fromDate(date, ticks, new Uint8Array(6).fill(0x80), new Uint8Array([0x80, 0x80]))
  }

  /** The largest id of the given instant (node and clock bytes as the original's `max`). */
  static max(date: Date, ticks = 9_999): TimeUuid {
    return TimeUuid.fromDate(date, ticks, new Uint8Array(6).fill(0x7f), new Uint8Array([0x7f, 0x7f]))
  }

  /** Parses a version-1 UUID string. Throws `InvalidTimeUuid` (a tagged error) on anything else. */
  static fromString(value: string): TimeUuid {
    const result = TimeUuid.parse(value)
    if (result instanceof InvalidTimeUuid) throw result
    return result
  }

  /** Like `fromString` but returns the error instead of throwing. */
  static parse(value: unknown): TimeUuid | InvalidTimeUuid {
    if (typeof value !== "string") return invalid(String(value), "must be a string")
    if (!UUID_PATTERN.test(value)) return invalid(value, "must be a UUID in 8-4-4-4-12 hexadecimal form")
    if (value[14] !== "1") return invalid(value, `is a version-${value[14]} UUID; event ids are version-1 time UUIDs`)
    const hex = value.replaceAll("-", "")
    const bytes = new Uint8Array(16)
    for (let i = 0; i < 16; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)
    return new TimeUuid(bytes)
  }

  /**
   * The instant of a version-1 time UUID in epoch milliseconds (truncated), read from its text without building a
   * TimeUuid; undefined for anything else. For the per-page bookkeeping (lag), where `parse` costs more than the rest.
   */
  static epochMillisOf(value: string): number | undefined {
    if (!TimeUuid.isTimeUuid(value)) return undefined
    // time_hi (12 bits, after the version digit) and time_mid (16) above time_low (32): 100 ns ticks since
    // 1582-10-15, a 60-bit number. 2^32 = 429,496 * 10^4 + 7,296 splits it into whole milliseconds and a remainder
    // that doubles hold exactly.
    const high = Number.parseInt(value.slice(15, 18), 16) * 2 ** 16 + Number.parseInt(value.slice(9, 13), 16)
    const low = Number.parseInt(value.slice(0, 8), 16)
    const ms = high * 429_496 + Math.floor((high * 7_296 + low) / 10_000)
    return ms - Number(GREGORIAN_OFFSET_MS)
  }

  static isTimeUuid(value: unknown): value is string {
    return typeof value === "string" && UUID_PATTERN.test(value) && value[14] === "1"
  }

  private static fromTimestamp(
    timestamp: bigint,
    node: Uint8Array | string | undefined,
    clock: Uint8Array | string | undefined
  ): TimeUuid {
    const bytes = new Uint8Array(16)
    const low = Number(timestamp & 0xffff_ffffn)
    const mid = Number((timestamp >> 32n) & 0xffffn)
    const high = Number((timestamp >> 48n) & 0x0fffn)
    bytes[0] = low >>> 24
    bytes[1] = (low >>> 16) & 0xff
    bytes[2] = (low >>> 8) & 0xff
    bytes[3] = low & 0xff
    bytes[4] = mid >>> 8
    bytes[5] = mid & 0xff
    bytes[6] = 0x10 | (high >>> 8)
    bytes[7] = high & 0xff
    const clockBytes = toBytes(clock, 2, "clock")
    bytes[8] = ((clockBytes[0] ?? 0) & 0x3f) | 0x80
    bytes[9] = clockBytes[1] ?? 0
    bytes.set(toBytes(node, 6, "node"), 10)
    return new TimeUuid(bytes)
  }

  /** The 60-bit timestamp: 100 ns ticks since 1582-10-15. */
  getTimestamp(): bigint {
    const b = this.bytes
    const low = BigInt((((b[0] ?? 0) << 24) >>> 0) + ((b[1] ?? 0) << 16) + ((b[2] ?? 0) << 8) + (b[3] ?? 0))
    const mid = BigInt(((b[4] ?? 0) << 8) + (b[5] ?? 0))
    const high = BigInt((((b[6] ?? 0) & 0x0f) << 8) + (b[7] ?? 0))
    return (high << 48n) | (mid << 32n) | low
  }

  /** The instant with millisecond precision and the 100 ns ticks beyond it. */
  getDatePrecision(): { date: Date; ticks: number } {
    const timestamp = this.getTimestamp()
    return {
      date: new Date(Number(timestamp / TICKS_PER_MS - GREGORIAN_OFFSET_MS)),
      ticks: Number(timestamp % TICKS_PER_MS)
    }
  }

  /** The instant, truncated to the millisecond. */
  getDate(): Date {
    return this.getDatePrecision().date
  }

  /** The node bytes (10-15). */
  getNodeId(): Uint8Array {
    return this.bytes.slice(10)
  }

  /** The clock-sequence bytes (8-9), variant bits included. */
  getClockId(): Uint8Array {
    return this.bytes.slice(8, 10)
  }

  /** The id one tick earlier, with the same node and clock: "just before this event". */
  getBefore(): TimeUuid {
    const { date, ticks } = this.getDatePrecision()
    const before = ticks > 0 ? { date, ticks: ticks - 1 } : { date: new Date(date.getTime() - 1), ticks: 9_999 }
    return TimeUuid.fromDate(before.date, before.ticks, this.getNodeId(), this.getClockId())
  }

  /** Time order, then clock, then node; the order Flowcore pages events in. */
  compare(other: TimeUuid): -1 | 0 | 1 {
    return compare(this.toString(), other.toString())
  }

  isBefore(other: TimeUuid): boolean {
    return this.getTimestamp() < other.getTimestamp()
  }

  isAfter(other: TimeUuid): boolean {
    return this.getTimestamp() > other.getTimestamp()
  }

  equals(other: TimeUuid): boolean {
    return this.toString() === other.toString()
  }

  toString(): string {
    if (this.#string === undefined) {
      const b = this.bytes
      const h = (i: number) => HEX[b[i] as number] as string
      this.#string = `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(
        13
      )}${h(14)}${h(15)}`
    }
    return this.#string
  }

  toJSON(): string {
    return this.toString()
  }
}

/**
 * A string that sorts lexically in time order (then clock, then node), computed from a v1 id string without parsing:
 * time_hi, time_mid, time_low, clock, node. Ids must be lowercase, as Flowcore writes them.
 */
export const sortKey = (id: string): string =>
  id.slice(15, 18) + id.slice(9, 13) + id.slice(0, 8) + id.slice(19, 23) + id.slice(24)

/** Compares two v1 id strings by time, then clock, then node. */
export const compare = (a: string, b: string): -1 | 0 | 1 => {
  if (a === b) return 0
  const ka = sortKey(a.toLowerCase())
  const kb = sortKey(b.toLowerCase())
  return ka < kb ? -1 : ka > kb ? 1 : 0
}
