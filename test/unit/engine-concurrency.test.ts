/**
 * Guarantee 6 of design.md §4: concurrency means parallelism (a stuck event does not idle the other slots), and an
 * ordering key keeps per-key fetch order, retries included, while different keys interleave.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect } from "effect"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { advanceUntil, atNow, eventAt, eventsFrom, HOUR, NOW, testLayers } from "./harness.ts"

const historyStart: PumpState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }

class Boom {
  readonly _tag = "Boom"
}

describe("guarantee 6: concurrency", () => {
  it.effect("with concurrency 4 and one event that never finishes, the other events keep 4 slots busy", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 41)
    const stuck = events[0] as FlowcoreEvent
    return atNow(
      Effect.gen(function* () {
        let inFlight = 0
        let started = 0
        const finished = new Set<string>()
        const pump = yield* DataPump.make({
          bufferSize: 100,
          handlerTimeoutMs: 24 * HOUR,
          drainTimeoutMs: 0,
          processor: {
            concurrency: 4,
            handleEvent: (event) =>
              Effect.suspend(() => {
                inFlight++
                started++
                return event.eventId === stuck.eventId ? Effect.never : Effect.sleep("200 millis")
              }).pipe(
                Effect.ensuring(
                  Effect.sync(() => {
                    inFlight--
                    finished.add(event.eventId)
                  })
                )
              )
          }
        })
        yield* pump.start
        const samples: Array<number> = []
        yield* advanceUntil(
          "every other event is handled",
          () => {
            // While events are still waiting to start, all four slots must be busy.
            if (started < events.length) samples.push(inFlight)
            return finished.size === events.length - 1
          },
          { stepMs: 50 }
        )
        expect(samples.length).toBeGreaterThan(40)
        expect(samples.every((n) => n === 4)).toBe(true)
        expect(finished.has(stuck.eventId)).toBe(false)
        expect(inFlight).toBe(1)
        // 40 events of 200 ms on 3 free slots: about 2.7 s, not 8 s (serial) nor blocked behind the stuck one.
        expect(yield* Clock.currentTimeMillis).toBeLessThanOrEqual(NOW + 3000)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("an ordering key keeps per-key fetch order, retries included, while different keys interleave", () => {
    const keys = ["A", "B", "A", "B", "A", "B", "A", "B"]
    const events = keys.map((key, n) => eventAt(NOW - 2 * HOUR + n * 1000, { payload: { key, n } }))
    const nameOf = (event: FlowcoreEvent) => `${String(event.payload.key)}${String(event.payload.n)}`
    return atNow(
      Effect.gen(function* () {
        const spans: Array<{ readonly name: string; readonly key: string; start: number; end: number }> = []
        const inFlightPerKey = new Map<string, number>()
        let sameKeyOverlaps = 0
        const pump = yield* DataPump.make({
          bufferSize: 100,
          redelivery: { baseDelayMs: 1000, maxDelayMs: 1000 },
          processor: {
            concurrency: 3,
            orderingKey: (event) => String(event.payload.key),
            handleEvent: (event, { attempt }) =>
              Effect.gen(function* () {
                const key = String(event.payload.key)
                const span = { name: `${nameOf(event)}#${attempt}`, key, start: yield* Clock.currentTimeMillis, end: 0 }
                spans.push(span)
                inFlightPerKey.set(key, (inFlightPerKey.get(key) ?? 0) + 1)
                if ((inFlightPerKey.get(key) ?? 0) > 1) sameKeyOverlaps++
                yield* Effect.sleep("100 millis")
                inFlightPerKey.set(key, (inFlightPerKey.get(key) ?? 1) - 1)
                span.end = yield* Clock.currentTimeMillis
                // A0 fails twice: its key must wait for both retries before A2 starts.
                if (nameOf(event) === "A0" && attempt < 3) return yield* Effect.fail(new Boom())
              })
          }
        })
        yield* pump.start
        yield* advanceUntil("every event is acknowledged", () =>
          Effect.map(pump.snapshot, (snapshot) => snapshot.counters.acknowledged === events.length)
        )
        const order = (key: string) => spans.filter((span) => span.key === key).map((span) => span.name)
        expect(order("A")).toEqual(["A0#1", "A0#2", "A0#3", "A2#1", "A4#1", "A6#1"])
        expect(order("B")).toEqual(["B1#1", "B3#1", "B5#1", "B7#1"])
        expect(sameKeyOverlaps).toBe(0)
        // B's events did not wait for A's retries.
        const startOf = (name: string) => spans.find((span) => span.name === name)?.start ?? Number.NaN
        expect(startOf("B7#1")).toBeLessThan(startOf("A0#2"))
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})
