import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"

describe("TimeBucket", () => {
  it.effect("rejects a date that does not exist, naming the value", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(TimeBucket.parse("20240230000000"))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(TimeBucket.parse("20240230000000"))
      expect(error._tag).toBe("InvalidTimeBucket")
      expect(error.message).toContain("20240230000000")
      expect(error.message).toContain("not a real UTC date")
    })
  )

  it.effect("rejects malformed strings and non-hour starts", () =>
    Effect.gen(function* () {
      for (const bad of ["2024", "2024010112000a", "20240101123000", "20241301000000", "20240101240000"]) {
        const error = yield* Effect.flip(TimeBucket.parse(bad))
        expect(error.message).toContain(bad)
      }
    })
  )

  it("converts from and to dates in UTC", () => {
    const bucket = TimeBucket.fromDate(new Date("2024-03-15T14:59:59.999Z"))
    expect(bucket).toBe("20240315140000")
    expect(TimeBucket.toDate(bucket).toISOString()).toBe("2024-03-15T14:00:00.000Z")
  })

  it("steps to the next hour across day, month and year ends", () => {
    expect(TimeBucket.next(TimeBucket.make("20241231230000"))).toBe("20250101000000")
    expect(TimeBucket.next(TimeBucket.make("20240228230000"))).toBe("20240229000000")
  })

  it("compares in time order", () => {
    const a = TimeBucket.make("20240101000000")
    const b = TimeBucket.make("20240101010000")
    expect(TimeBucket.compare(a, b)).toBe(-1)
    expect(TimeBucket.compare(b, a)).toBe(1)
    expect(TimeBucket.compare(a, a)).toBe(0)
  })
})
