/**
 * Guarantee 2's bound on duplicates: events completed past the *saved* checkpoint — what a SIGKILL at that instant
 * delivers again — never exceed bufferSize, even when every save takes a long time (the buffer keeps counting settled
 * events until a save covers them).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { EventBufferLive } from "../../src/layers/buffer/EventBufferLive.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { PumpMetrics } from "../../src/services/PumpMetrics.ts"
import { StateStore } from "../../src/services/StateStore.ts"
import { advanceUntil, atNow, HOUR, history, NOW } from "./harness.ts"

const BUFFER_SIZE = 50

describe("guarantee 2: duplicates after a crash are bounded by bufferSize", () => {
  it.effect("with saves that take 100 ms, completed events past the saved checkpoint stay <= bufferSize", () =>
    atNow(
      Effect.gen(function* () {
        let saved: PumpState | undefined = { timeBucket: TimeBucket.fromDate(NOW - 4 * HOUR) }
        const slowStore = Layer.succeed(
          StateStore,
          StateStore.of({
            name: "slow",
            load: Effect.sync(() => Option.fromUndefinedOr(saved)),
            save: (state) =>
              Effect.sleep("100 millis").pipe(
                Effect.andThen(
                  Effect.sync(() => {
                    saved = state
                  })
                )
              )
          })
        )
        const layers = Layer.mergeAll(
          InMemoryDataSource.layer({ events: history(2_000, 2, 3), eventTypes: ["created", "updated"] }),
          ManualNotifier.layer,
          slowStore,
          EventBufferLive.pipe(Layer.provide(PumpMetrics.none)),
          PumpMetrics.none
        )
        const completed: Array<string> = []
        let worst = 0
        const exposure = (order: ReadonlyMap<string, number>) => {
          const savedAt = saved?.eventId === undefined ? 0 : (order.get(saved.eventId) ?? -1) + 1
          return completed.length - savedAt
        }
        yield* Effect.gen(function* () {
          const all = yield* InMemoryDataSource.use((source) => source.events)
          const order = new Map(all.map((event, i) => [event.eventId, i]))
          const fiber = yield* DataPump.run({
            bufferSize: BUFFER_SIZE,
            stopAt: new Date(NOW - HOUR / 2),
            rolloverSettleMs: 0,
            processor: {
              concurrency: 10,
              handler: (events: ReadonlyArray<FlowcoreEvent>) =>
                Effect.sync(() => {
                  for (const event of events) completed.push(event.eventId)
                  worst = Math.max(worst, exposure(order))
                })
            }
          }).pipe(Effect.forkChild)
          yield* advanceUntil("the run ends", () => fiber.pollUnsafe() !== undefined, { stepMs: 10, maxSteps: 50_000 })
          yield* Fiber.join(fiber)
        }).pipe(Effect.provide(layers))
        expect(completed.length).toBe(2_000)
        expect(worst).toBeGreaterThan(0)
        expect(worst).toBeLessThanOrEqual(BUFFER_SIZE)
      })
    )
  )
})
