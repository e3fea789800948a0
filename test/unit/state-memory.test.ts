import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import { StateStore } from "../../src/services/StateStore.ts"

const stateAt = (iso: string): PumpState => ({
  timeBucket: TimeBucket.fromDate(new Date(iso)),
  eventId: TimeUuid.fromDate(new Date(iso)).toString()
})

describe("MemoryStateStore", () => {
  it.effect("starts empty and round-trips saves, counting them", () =>
    Effect.gen(function* () {
      const store = yield* StateStore
      const memory = yield* MemoryStateStore
      expect(store.name).toBe("memory")
      expect(Option.isNone(yield* store.load)).toBe(true)

      const first = stateAt("2024-03-15T14:10:00Z")
      const second: PumpState = { timeBucket: TimeBucket.make("20240315150000") }
      yield* store.save(first)
      yield* store.save(second)

      expect(yield* store.load).toEqual(Option.some(second))
      expect(yield* memory.get).toEqual(Option.some(second))
      expect(yield* memory.saves).toBe(2)
      expect(yield* memory.history).toEqual([first, second])
    }).pipe(Effect.provide(MemoryStateStore.layer()))
  )

  it.effect("loads the initial state it was given", () => {
    const initial = stateAt("2024-01-01T00:30:00Z")
    return Effect.gen(function* () {
      const store = yield* StateStore
      expect(yield* store.load).toEqual(Option.some(initial))
      expect(yield* (yield* MemoryStateStore).saves).toBe(0)
    }).pipe(Effect.provide(MemoryStateStore.layer(initial)))
  })

  it.effect("fails the next saves on request, retryable or fatal, then recovers", () =>
    Effect.gen(function* () {
      const store = yield* StateStore
      const memory = yield* MemoryStateStore
      const state = stateAt("2024-03-15T14:10:00Z")

      yield* memory.failNextSaves(1)
      const retryable = yield* Effect.flip(store.save(state))
      expect(retryable._tag).toBe("StateStoreError")
      expect(retryable.store).toBe("memory")
      expect(retryable.operation).toBe("save")
      expect(retryable.fatal).not.toBe(true)
      expect(retryable.message).toContain(state.timeBucket)

      yield* memory.failNextSaves(1, { fatal: true })
      expect((yield* Effect.flip(store.save(state))).fatal).toBe(true)

      expect(Option.isNone(yield* store.load)).toBe(true)
      yield* store.save(state)
      expect(yield* store.load).toEqual(Option.some(state))
      expect(yield* memory.saves).toBe(1)
    }).pipe(Effect.provide(MemoryStateStore.layer()))
  )

  it.effect("gives each layer build its own state", () =>
    Effect.gen(function* () {
      yield* StateStore.use((store) => store.save(stateAt("2024-03-15T14:10:00Z"))).pipe(
        Effect.provide(MemoryStateStore.layer())
      )
      const fresh = yield* StateStore.use((store) => store.load).pipe(Effect.provide(MemoryStateStore.layer()))
      expect(Option.isNone(fresh)).toBe(true)
    })
  )
})
