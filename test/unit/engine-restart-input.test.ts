import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as DataPump from "../../src/pump/DataPump.ts"
import { atNow, testLayers } from "./harness.ts"

describe("restart input", () => {
  it.effect("a restart state with a bad bucket or a non-time-UUID event id fails with a typed error naming it", () =>
    atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({})
        const badBucket = yield* Effect.flip(pump.restart({ timeBucket: "20240230000000" }))
        expect(badBucket._tag).toBe("InvalidTimeBucket")
        expect(badBucket.message).toContain("20240230000000")
        const badId = yield* Effect.flip(pump.restart({ timeBucket: "20240101000000", eventId: "not-a-uuid" }))
        expect(badId._tag).toBe("InvalidTimeUuid")
        expect(badId.message).toContain("not-a-uuid")
        expect(yield* pump.isRunning).toBe(false)
      }).pipe(Effect.scoped, Effect.provide(testLayers({})))
    )
  )
})
