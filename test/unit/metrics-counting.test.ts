/**
 * The engine counts pulled and buffered events per run of one event type, not per event: the totals each event type
 * reaches the recorder with must be those of its events, however the types are mixed and whatever the buffer skips.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { makeBuffer } from "../../src/layers/buffer/EventBufferLive.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { noopRecorder, PumpMetrics, type PumpMetricsRecorder } from "../../src/services/PumpMetrics.ts"
import { advanceUntil, atNow, eventAt, HOUR, history, NOW, testLayers } from "./harness.ts"

/** A recorder that sums `pulled` and `buffered` per event type: [events, bytes]. */
const summing = () => {
  const pulled = new Map<string, [number, number]>()
  const buffered = new Map<string, [number, number]>()
  const add = (into: Map<string, [number, number]>, eventType: string, count: number, bytes: number) => {
    const [events, size] = into.get(eventType) ?? [0, 0]
    into.set(eventType, [events + count, size + bytes])
  }
  const recorder: PumpMetricsRecorder = {
    ...noopRecorder,
    pulled: (eventType, count, bytes) => add(pulled, eventType, count, bytes),
    buffered: (eventType, count, bytes) => add(buffered, eventType, count, bytes)
  }
  return { pulled, buffered, recorder }
}

describe("pulled and buffered counts per event type", () => {
  it.effect("an offer counts the events it takes, per type, and not those it already holds", () =>
    Effect.gen(function* () {
      const counts = summing()
      const buffer = yield* makeBuffer(
        {
          capacity: 100,
          maxRedeliveryCount: -1,
          redeliverySchedule: Schedule.spaced("1 second"),
          onFinalFailure: () => Effect.void,
          initialWatermark: undefined
        },
        counts.recorder
      )
      const types = ["a", "a", "b", "a", "c", "c", "b"]
      const events = types.map((eventType, i) => eventAt(NOW + i, { eventType }))
      // 20 bytes per event, then the first two again (held already) and the rest at 10 bytes per event.
      yield* buffer.offer(events.slice(0, 2), 40)
      yield* buffer.offer(events, 70)
      expect(Object.fromEntries(counts.buffered)).toEqual({ a: [3, 50], b: [2, 20], c: [2, 20] })
      expect(buffer.snapshot().held).toBe(7)
    })
  )

  it.effect("the fetch loop counts every pulled event under its own type, pages of mixed types included", () => {
    const counts = summing()
    // Alternating types; pages of 7 (an odd size) start with either type.
    const events: ReadonlyArray<FlowcoreEvent> = history(40, 2).map((input, i) =>
      eventAt(input.at as number, { eventType: i % 3 === 0 ? "created" : "updated" })
    )
    return atNow(
      Effect.gen(function* () {
        let handled = 0
        const pump = yield* DataPump.make({
          maxPageSize: 7,
          processor: { concurrency: 3, handler: (batch) => Effect.sync(() => (handled += batch.length)) }
        })
        yield* pump.start
        yield* advanceUntil("every event is handled", () => handled === events.length)
        yield* pump.stop
        const created = events.filter((event) => event.eventType === "created").length
        expect(counts.pulled.get("created")?.[0]).toBe(created)
        expect(counts.pulled.get("updated")?.[0]).toBe(events.length - created)
        // Every event buffered left the buffer again.
        expect(counts.buffered.get("created")?.[0]).toBe(0)
        expect(counts.buffered.get("updated")?.[0]).toBe(0)
      }).pipe(
        Effect.provide(
          testLayers({
            events,
            state: { timeBucket: TimeBucket.fromDate(NOW - 2 * HOUR) },
            metrics: Layer.succeed(PumpMetrics, counts.recorder)
          })
        )
      )
    )
  })
})
