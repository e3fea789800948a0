import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { v1 } from "uuid"
import { InvalidTimeUuid } from "../../src/domain/errors.ts"
import { compare, sortKey, TimeUuid } from "../../src/domain/TimeUuid.ts"

const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(Math.random() * 256))

describe("TimeUuid", () => {
  it("matches npm uuid v1 byte for byte on thousands of random cases", () => {
    for (let i = 0; i < 5_000; i++) {
      const ms = Math.floor(Math.random() * 4_102_444_800_000) // 1970 .. 2100
      const ticks = Math.floor(Math.random() * 10_000)
      const node = randomBytes(6)
      const clock = randomBytes(2)
      const ours = TimeUuid.fromDate(new Date(ms), ticks, node, clock)
      const theirs = v1({
        msecs: ms,
        nsecs: ticks,
        clockseq: (((clock[0] ?? 0) & 0x3f) << 8) | (clock[1] ?? 0),
        node
      })
      expect(ours.toString()).toBe(theirs)
      const back = TimeUuid.fromString(theirs).getDatePrecision()
      expect(back.date.getTime()).toBe(ms)
      expect(back.ticks).toBe(ticks)
    }
  })

  it("orders by the 60-bit timestamp, not by string", () => {
    const ids = Array.from({ length: 2_000 }, (_, i) =>
      TimeUuid.fromDate(new Date(1_700_000_000_000 + i * 997_000), i % 10_000).toString()
    )
    const shuffled = [...ids].sort()
    expect(shuffled).not.toEqual(ids)
    expect([...shuffled].sort(compare)).toEqual(ids)
    expect([...shuffled].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : 1))).toEqual(ids)
  })

  it("now() gives increasing ids within a millisecond", () => {
    const ids = Array.from({ length: 100 }, () => TimeUuid.now())
    for (let i = 1; i < ids.length; i++) {
      expect((ids[i] as TimeUuid).isAfter(ids[i - 1] as TimeUuid)).toBe(true)
    }
  })

  it("fromDate without ticks uses an increasing process-wide counter", () => {
    const date = new Date("2024-01-01T12:30:00Z")
    const a = TimeUuid.fromDate(date).getDatePrecision().ticks
    const b = TimeUuid.fromDate(date).getDatePrecision().ticks
    expect(b).toBe((a + 1) % 10_000)
  })

  it("getBefore is one tick earlier, borrowing from the millisecond", () => {
    const id = TimeUuid.fromDate(new Date(1_000), 0)
    const before = id.getBefore().getDatePrecision()
    expect(before.date.getTime()).toBe(999)
    expect(before.ticks).toBe(9_999)
    expect(id.getBefore().getNodeId()).toEqual(id.getNodeId())
    expect(TimeUuid.fromDate(new Date(1_000), 5).getBefore().getDatePrecision().ticks).toBe(4)
  })

  it("getDate truncates to the millisecond", () => {
    const id = TimeUuid.fromDate(new Date("2024-03-15T14:05:06.789Z"), 1234)
    expect(id.getDate().toISOString()).toBe("2024-03-15T14:05:06.789Z")
  })

  it("epochMillisOf reads the same instant as getDate, for any date and tick, and nothing from other strings", () => {
    fc.assert(
      fc.property(
        // 1582-10-15 (the start of the clock) .. the 60-bit clock's end, in the year 5236.
        fc.integer({ min: -12_219_292_800_000, max: 103_072_857_660_000 }),
        fc.integer({ min: 0, max: 9_999 }),
        (ms, ticks) => {
          const id = TimeUuid.fromDate(new Date(ms), ticks, randomBytes(6), randomBytes(2))
          expect(TimeUuid.epochMillisOf(id.toString())).toBe(id.getDate().getTime())
          expect(TimeUuid.epochMillisOf(id.toString().toUpperCase())).toBe(ms)
        }
      )
    )
    expect(TimeUuid.epochMillisOf("not-a-uuid")).toBeUndefined()
    expect(TimeUuid.epochMillisOf("9b2f7c0e-3c1a-4f7e-9a55-6b8e2d9c1f00")).toBeUndefined()
  })

  it("rejects non-UUIDs and non-version-1 UUIDs with a clear error", () => {
    expect(() => TimeUuid.fromString("not-a-uuid")).toThrow(InvalidTimeUuid)
    expect(() => TimeUuid.fromString("not-a-uuid")).toThrow(/8-4-4-4-12/)
    expect(() => TimeUuid.fromString("9b2f7c0e-3c1a-4f7e-9a55-6b8e2d9c1f00")).toThrow(/version-4/)
  })

  it("min and max bracket every id of their millisecond", () => {
    const date = new Date("2024-01-01T00:00:00.123Z")
    const id = TimeUuid.fromDate(date, 5000).toString()
    expect(compare(TimeUuid.min(date).toString(), id)).toBe(-1)
    expect(compare(TimeUuid.max(date).toString(), id)).toBe(1)
  })
})
