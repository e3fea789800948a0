import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { atNow, HOUR, history, NOW, testLayers } from "./harness.ts"

describe("engine basics", () => {
  it.effect("catches up through historical buckets in order and stops at stopAt", () =>
    atNow(
      Effect.gen(function* () {
        const seen: Array<FlowcoreEvent> = []
        const fiber = yield* DataPump.run({
          bufferSize: 10,
          stopAt: new Date(NOW - HOUR),
          processor: { concurrency: 3, handler: (events) => Effect.sync(() => void seen.push(...events)) }
        }).pipe(Effect.forkChild)
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(fiber)
        const all = yield* InMemoryDataSource.use((s) => s.events)
        const expected = all.filter((e) => e.timeBucket <= TimeBucket.fromDate(NOW - HOUR) && e.eventId)
        const stopId = expected.filter((e) => Date.parse(e.validTime) <= NOW - HOUR)
        expect(seen.map((e) => e.eventId)).toEqual(stopId.map((e) => e.eventId))
        const saved = yield* MemoryStateStore.use((m) => m.get)
        const last = stopId[stopId.length - 1]
        expect(Option.getOrUndefined(saved)).toEqual({ timeBucket: last?.timeBucket, eventId: last?.eventId })
      }).pipe(
        Effect.provide(
          testLayers({
            events: history(100, 4),
            state: { timeBucket: TimeBucket.fromDate(NOW - 5 * HOUR) }
          })
        )
      )
    )
  )

  it.effect(
    "fast handlers are checkpointed once per scheduler turn, not once per event, and the last save is exact",
    () =>
      atNow(
        Effect.gen(function* () {
          let handled = 0
          const fiber = yield* DataPump.run({
            bufferSize: 1000,
            stopAt: new Date(NOW - HOUR),
            processor: {
              concurrency: 1,
              handler: (events) =>
                Effect.sync(() => {
                  handled += events.length
                })
            }
          }).pipe(Effect.forkChild)
          yield* TestClock.adjust("1 minute")
          yield* Fiber.join(fiber)
          const memory = yield* MemoryStateStore
          const saves = yield* memory.saves
          expect(handled).toBe(2000)
          // One handler call per event (concurrency 1): a save per acknowledgement would be 2,000 saves.
          expect(saves).toBeGreaterThan(0)
          expect(saves).toBeLessThan(handled / 20)
          const all = yield* InMemoryDataSource.use((s) => s.events)
          const last = all[all.length - 1]
          expect(Option.getOrUndefined(yield* memory.get)).toEqual({
            timeBucket: last?.timeBucket,
            eventId: last?.eventId
          })
        }).pipe(
          Effect.provide(
            testLayers({ events: history(2000, 2, 3), state: { timeBucket: TimeBucket.fromDate(NOW - 4 * HOUR) } })
          )
        )
      )
  )
})
