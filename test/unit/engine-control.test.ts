/**
 * Guarantee 7 of design.md §4: cancellation-safe control. restart(state) while handlers run, acknowledgements from an
 * older generation, and stop() with its final checkpoint and drain timeout.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { advanceUntil, atNow, eventsFrom, HOUR, idle, NOW, savedState, testLayers } from "./harness.ts"

const historyStart: PumpState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }

describe("guarantee 7: cancellation-safe control", () => {
  it.effect("restart(state) while handlers run drains them, then reads again from the given state", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 10)
    return atNow(
      Effect.gen(function* () {
        const log: Array<{ readonly n: number; readonly generation: number; readonly outcome: string }> = []
        let controller: DataPump.PumpController | undefined
        const pump: DataPump.PumpController = yield* DataPump.make({
          bufferSize: 4,
          processor: {
            concurrency: 2,
            handleEvent: (event) =>
              Effect.gen(function* () {
                const generation = controller === undefined ? 0 : (yield* controller.snapshot).generation
                const entry = { n: Number(event.payload.n), generation }
                yield* Effect.sleep("1 second").pipe(
                  Effect.andThen(Effect.sync(() => log.push({ ...entry, outcome: "done" }))),
                  Effect.onInterrupt(() => Effect.sync(() => log.push({ ...entry, outcome: "interrupted" })))
                )
              })
          }
        })
        controller = pump
        yield* pump.start
        yield* TestClock.adjust(2500)
        // Events 0-3 are done, 4 and 5 are half-way when the restart begins.
        expect(log.map((entry) => entry.n)).toEqual([0, 1, 2, 3])
        const restart = yield* pump.restart(historyStart).pipe(Effect.forkChild)
        yield* idle
        expect(restart.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust(500)
        yield* Fiber.join(restart)
        expect(log.filter((entry) => entry.outcome === "interrupted")).toEqual([])
        expect(log.map((entry) => entry.n)).toEqual([0, 1, 2, 3, 4, 5])
        expect((yield* pump.snapshot).generation).toBe(2)
        expect(yield* MemoryStateStore.use((memory) => memory.history)).toContainEqual(historyStart)

        yield* advanceUntil(
          "the second generation handled every event",
          () => log.filter((entry) => entry.generation === 2).length === events.length
        )
        expect(log.filter((entry) => entry.generation === 2).map((entry) => entry.n)).toEqual(events.map((_, n) => n))
        const last = events[events.length - 1] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("an acknowledgement of a delivery from before a restart never moves the checkpoint after it", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 6)
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({ bufferSize: 10, achknowledgeTimeoutMs: 60_000 })
        yield* pump.start
        yield* idle
        const stale = yield* pump.reserveDelivery(3)
        expect(stale.events).toHaveLength(3)

        yield* pump.restart(historyStart)
        yield* idle
        // A consumer of the new generation holds the same events now.
        const fresh = yield* pump.reserveDelivery(3)
        expect(fresh.events.map((event) => event.eventId)).toEqual(stale.events.map((event) => event.eventId))

        const staleIds = stale.events.map((event) => event.eventId)
        expect(yield* pump.acknowledge(staleIds, stale.deliveryId)).toBe(0)
        expect(yield* pump.fail(staleIds, stale.deliveryId)).toBe(0)
        yield* idle
        expect(yield* savedState).toEqual(historyStart)
        expect((yield* pump.snapshot).buffer.reserved).toBe(3)

        expect(yield* pump.acknowledge(staleIds, fresh.deliveryId)).toBe(3)
        yield* idle
        const third = events[2] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: third.timeBucket, eventId: third.eventId })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("stop() saves the final checkpoint and returns", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 5)
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({
          bufferSize: 10,
          // Only the final flush may save: no periodic save would happen for a long time.
          checkpoint: { everyEvents: 1000 },
          processor: { handleEvent: () => Effect.void }
        })
        yield* pump.start
        yield* idle
        expect((yield* pump.snapshot).counters.acknowledged).toBe(5)
        expect(yield* MemoryStateStore.use((memory) => memory.saves)).toBe(0)
        yield* pump.stop
        const last = events[4] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
        expect(yield* MemoryStateStore.use((memory) => memory.saves)).toBe(1)
        expect(yield* pump.isRunning).toBe(false)
        yield* pump.awaitStopped
        // Idempotent.
        yield* pump.stop
        expect(yield* MemoryStateStore.use((memory) => memory.saves)).toBe(1)
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("stop() interrupts a handler that outlives drainTimeoutMs, keeping the checkpoint before it", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 3)
    const [first, stuck] = events as [FlowcoreEvent, FlowcoreEvent]
    return atNow(
      Effect.gen(function* () {
        let interruptedAt: number | undefined
        const pump = yield* DataPump.make({
          bufferSize: 10,
          drainTimeoutMs: 2000,
          handlerTimeoutMs: 24 * HOUR,
          processor: {
            handleEvent: (event) =>
              event.eventId === stuck.eventId
                ? Effect.never.pipe(
                    Effect.onInterrupt(() =>
                      Effect.flatMap(Clock.currentTimeMillis, (now) =>
                        Effect.sync(() => {
                          interruptedAt = now
                        })
                      )
                    )
                  )
                : Effect.void
          }
        })
        yield* pump.start
        yield* idle
        const stopping = yield* pump.stop.pipe(Effect.forkChild)
        yield* TestClock.adjust(1999)
        expect(stopping.pollUnsafe()).toBeUndefined()
        expect(interruptedAt).toBeUndefined()
        yield* TestClock.adjust(1)
        yield* Fiber.join(stopping)
        expect(interruptedAt).toBe(NOW + 2000)
        expect(yield* savedState).toEqual({ timeBucket: first.timeBucket, eventId: first.eventId })
        yield* pump.awaitStopped
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("stop() waits for a failed handler still running, and the final checkpoint covers its event", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 2)
    const [failing, last] = events as [FlowcoreEvent, FlowcoreEvent]
    return atNow(
      Effect.gen(function* () {
        const log: Array<string> = []
        const pump = yield* DataPump.make({
          bufferSize: 10,
          drainTimeoutMs: 5000,
          maxRedeliveryCount: 0,
          processor: {
            handleEvent: (event) => (event.eventId === failing.eventId ? Effect.fail("no") : Effect.void),
            // Takes three seconds, well within the drain timeout.
            failedHandler: () =>
              Effect.sleep("3 seconds").pipe(
                Effect.andThen(
                  Effect.flatMap(Clock.currentTimeMillis, (now) =>
                    Effect.sync(() => log.push(`failed handled@${now - NOW}`))
                  )
                )
              )
          }
        })
        yield* pump.start
        yield* idle
        const stopping = yield* pump.stop.pipe(Effect.forkChild)
        yield* TestClock.adjust(2999)
        expect(stopping.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust(1)
        yield* Fiber.join(stopping)
        expect(log).toEqual(["failed handled@3000"])
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
        expect((yield* pump.snapshot).counters).toMatchObject({ failed: 1, acknowledged: 1 })
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})
