import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import type { PumpState, PumpStateInput } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"
import { CallbacksStateStore, type CallbacksStateStoreOptions } from "../../src/layers/stateStore/Callbacks.ts"
import { StateStore } from "../../src/services/StateStore.ts"

const eventId = TimeUuid.min(new Date("2024-03-15T14:20:00Z")).toString()
const state: PumpState = { timeBucket: TimeBucket.make("20240315140000"), eventId }

const withStore = <A, E>(
  options: CallbacksStateStoreOptions,
  f: (store: StateStore["Service"]) => Effect.Effect<A, E>
) => StateStore.use(f).pipe(Effect.provide(CallbacksStateStore.layer(options).pipe(Layer.orDie)))

const load = (getState: CallbacksStateStoreOptions["getState"]) =>
  withStore({ getState, setState: () => undefined }, (store) => store.load)

const later = <A>(value: A, ms = 5) => new Promise<A>((resolve) => setTimeout(() => resolve(value), ms))

describe("CallbacksStateStore load", () => {
  it.live("accepts sync and async getState, and null/undefined as no state", () =>
    Effect.gen(function* () {
      expect(yield* load(() => ({ timeBucket: "20240315140000", eventId }))).toEqual(Option.some(state))
      expect(yield* load(() => later({ timeBucket: "20240315140000", eventId }))).toEqual(Option.some(state))
      expect(Option.isNone(yield* load(() => null))).toBe(true)
      expect(Option.isNone(yield* load(() => undefined))).toBe(true)
      expect(Option.isNone(yield* load(() => later(null)))).toBe(true)
    })
  )

  it.live("reads a missing, undefined or null eventId as the whole bucket", () =>
    Effect.gen(function* () {
      const wholeBucket = Option.some({ timeBucket: "20240315140000" })
      expect(yield* load(() => ({ timeBucket: "20240315140000" }))).toEqual(wholeBucket)
      expect(yield* load(() => ({ timeBucket: "20240315140000", eventId: undefined }))).toEqual(wholeBucket)
      const fromDatabaseRow = { timeBucket: "20240315140000", eventId: null } as unknown as PumpStateInput
      expect(yield* load(() => fromDatabaseRow)).toEqual(wholeBucket)
    })
  )

  it.live("an invalid state from getState is CorruptState saying where it came from", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ timeBucket: "2024031514" }, "2024031514"],
        [{ timeBucket: "20240315140000", eventId: "2f1e7c8a-3b4d-4e5f-8a6b-7c8d9e0f1a2b" }, "UUID v1"],
        [{ time_bucket: "20240315140000" }, "timeBucket"],
        ["20240315140000", "Expected object"]
      ]
      for (const [value, problem] of cases) {
        const error = yield* Effect.flip(load(() => value as PumpStateInput))
        expect(error._tag).toBe("CorruptState")
        expect(error.message).toContain("stateManager.getState()")
        expect(error.message).toContain(problem)
        expect(error.message).toContain("Return null to start from the live edge")
      }
    })
  )

  it.live("a throwing or rejecting getState fails load with StateStoreError carrying the cause", () =>
    Effect.gen(function* () {
      const boom = new Error("database is down")
      for (const getState of [
        () => {
          throw boom
        },
        () => Promise.reject(boom)
      ]) {
        const error = yield* Effect.flip(load(getState))
        if (error._tag !== "StateStoreError") throw new Error(`expected StateStoreError, got ${error._tag}`)
        expect(error.store).toBe("callbacks")
        expect(error.operation).toBe("load")
        expect(error.cause).toBe(boom)
        expect(error.message).toContain("getState")
        expect(error.message).toContain("database is down")
      }
    })
  )

  it.live("rejects options that are not functions with InvalidOptions", () =>
    Effect.gen(function* () {
      const bad = { getState: "nope", setState: () => undefined } as unknown as CallbacksStateStoreOptions
      const error = yield* Effect.flip(Layer.build(CallbacksStateStore.layer(bad)))
      expect(error._tag).toBe("InvalidOptions")
      expect(error.message).toContain("stateManager.getState")
      const badMode = { getState: () => null, setState: () => undefined, onSaveError: "ignore" }
      const modeError = yield* Effect.flip(
        Layer.build(CallbacksStateStore.layer(badMode as unknown as CallbacksStateStoreOptions))
      )
      expect(modeError.message).toContain("stateManager.onSaveError")
    })
  )
})

describe("CallbacksStateStore save", () => {
  it.live("hands sync and async setState a fresh plain object per save", () =>
    Effect.gen(function* () {
      for (const async of [false, true]) {
        const received: Array<PumpStateInput> = []
        const setState = (value: PumpStateInput) => {
          received.push(value)
          return async ? later(undefined) : undefined
        }
        const second: PumpState = { timeBucket: TimeBucket.make("20240315150000") }
        yield* withStore({ getState: () => null, setState }, (store) =>
          Effect.gen(function* () {
            yield* store.save(state)
            ;(received[0] as { timeBucket: string }).timeBucket = "mutated by the user"
            yield* store.save(state)
            yield* store.save(second)
          })
        )
        expect(received).toHaveLength(3)
        expect(received[1]).toEqual({ timeBucket: "20240315140000", eventId })
        expect(received[1]).not.toBe(state)
        expect(received[1]).not.toBe(received[0])
        expect(Object.keys(received[2] ?? {}).sort()).toEqual(["eventId", "timeBucket"])
        expect(received[2]).toEqual({ timeBucket: "20240315150000", eventId: undefined })
      }
    })
  )

  it.live("calls an async setState one save at a time, in call order", () =>
    Effect.gen(function* () {
      const finished: Array<string> = []
      let running = 0
      let maxRunning = 0
      const setState = async (value: PumpStateInput) => {
        running++
        maxRunning = Math.max(maxRunning, running)
        // Earlier saves take longer, so without serialisation they would finish last.
        await later(undefined, 30 - finished.length * 5)
        finished.push(value.timeBucket)
        running--
      }
      const buckets = ["20240315140000", "20240315150000", "20240315160000", "20240315170000"]
      yield* withStore({ getState: () => null, setState }, (store) =>
        Effect.forEach(buckets, (bucket) => store.save({ timeBucket: TimeBucket.make(bucket) }), {
          concurrency: "unbounded",
          discard: true
        })
      )
      expect(finished).toEqual(buckets)
      expect(maxRunning).toBe(1)
    })
  )

  it.live('a throwing setState is a retryable StateStoreError under "retry" (the default)', () =>
    Effect.gen(function* () {
      const boom = new Error("disk full")
      for (const options of [{}, { onSaveError: "retry" as const }]) {
        for (const setState of [
          () => {
            throw boom
          },
          () => Promise.reject(boom)
        ]) {
          const error = yield* Effect.flip(
            withStore({ getState: () => null, setState, ...options }, (store) => store.save(state))
          )
          expect(error.store).toBe("callbacks")
          expect(error.operation).toBe("save")
          expect(error.fatal).toBe(false)
          expect(error.cause).toBe(boom)
          expect(error.message).toContain("disk full")
          expect(error.message).toContain("20240315140000")
        }
      }
    })
  )

  it.live('a throwing setState is a fatal StateStoreError under "stop"', () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        withStore(
          {
            getState: () => null,
            setState: () => Promise.reject(new Error("permission denied")),
            onSaveError: "stop"
          },
          (store) => store.save(state)
        )
      )
      expect(error.fatal).toBe(true)
      expect(error.operation).toBe("save")
      expect(error.message).toContain("permission denied")
      expect(error.message).toContain("stops")
    })
  )
})
