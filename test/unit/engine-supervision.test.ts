/**
 * Guarantee 9 of design.md §4: supervised, never silently dead. Failing fetches, bucket listings and checkpoint saves
 * are retried with growing backoff and show in the snapshot's health; malformed pages never corrupt anything; a fatal
 * save error ends the run with that error.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import { DataSourceError } from "../../src/domain/errors.ts"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import {
  advanceUntil,
  assertCheckpointCovers,
  atNow,
  eventAt,
  eventsFrom,
  HOUR,
  idle,
  NOW,
  recordingFetches,
  savedState,
  testLayers
} from "./harness.ts"

const historyStart: PumpState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }
const supervision = { baseDelayMs: 1000, maxDelayMs: 60_000 }

/** A source error that no retry can fix. */
const unauthorized = new DataSourceError({
  command: "TimeBucketList",
  kind: "Status",
  status: 401,
  retryable: false,
  message: "TimeBucketList: 401 Unauthorized"
})

describe("guarantee 9: supervision", () => {
  it.effect("failing page fetches are retried with growing backoff, shown in health, then the pump continues", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 5)
    const { fetches, layer } = recordingFetches(testLayers({ events, state: historyStart }))
    return atNow(
      Effect.gen(function* () {
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          supervision,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* InMemoryDataSource.use((source) => source.failNext(3, { call: "fetchPage" }))
        yield* pump.start
        yield* idle
        const during = yield* pump.snapshot
        expect(during.health.fetching.consecutiveFailures).toBe(1)
        expect(during.health.fetching.lastError).toContain("503")
        expect(during.counters.fetchRetries).toBe(1)
        expect(during.running).toBe(true)

        yield* advanceUntil("the events are handled", () => handled.length === events.length, { stepMs: 100 })
        expect(handled).toEqual(events.map((event) => event.eventId))
        const after = yield* pump.snapshot
        expect(after.health.fetching.consecutiveFailures).toBe(0)
        expect(after.health.fetching.lastProgressAt).toBeGreaterThan(NOW)
        expect(after.counters.fetchRetries).toBe(3)

        // Attempts 1-4 of the first page: delays of 1000, 2000, 4000 ms, each x0.8..1.2.
        const delays = fetches.slice(1, 4).map((fetch, i) => fetch.at - (fetches[i]?.at ?? 0))
        const bounds = [1000, 2000, 4000]
        delays.forEach((delay, i) => {
          expect(delay).toBeGreaterThanOrEqual(0.8 * (bounds[i] ?? 0))
          expect(delay).toBeLessThanOrEqual(1.2 * (bounds[i] ?? 0))
        })
        expect(fetches.slice(0, 4).every((fetch) => fetch.request.timeBucket === events[0]?.timeBucket)).toBe(true)
        yield* pump.stop
      }).pipe(Effect.provide(layer))
    )
  })

  it.effect("a failing bucket listing during the run is retried and the refreshed list is still used", () => {
    // Two events in one bucket and one slot: the fetcher waits for space before it reaches the end of the list.
    const early = [eventAt(NOW - 2 * HOUR - 10 * 60_000), eventAt(NOW - 2 * HOUR - 5 * 60_000)]
    const second = eventAt(NOW - HOUR)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const gate = yield* Deferred.make<void>()
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          bufferSize: 1,
          supervision,
          processor: {
            handleEvent: (event) =>
              Deferred.await(gate).pipe(Effect.andThen(Effect.sync(() => handled.push(event.eventId))))
          }
        })
        yield* pump.start
        yield* idle
        expect((yield* source.calls).timeBuckets).toBe(1)
        // The refresh at the end of the cached list (after the early events' bucket) fails twice.
        yield* source.failNext(2, { call: "timeBuckets" })
        yield* source.append([second])
        yield* Deferred.succeed(gate, undefined)
        yield* idle
        expect(handled).toEqual(early.map((event) => event.eventId))
        const during = yield* pump.snapshot
        expect(during.health.fetching.consecutiveFailures).toBe(1)
        expect(during.health.fetching.lastError).toContain("503")
        expect(during.running).toBe(true)

        yield* advanceUntil("the event of the bucket found by the refresh is handled", () => handled.length === 3)
        expect(handled).toEqual([...early, second].map((event) => event.eventId))
        // The listing at start, two failed refreshes, the refresh that found the bucket, one more after it.
        expect((yield* source.calls).timeBuckets).toBe(5)
        expect((yield* pump.snapshot).health.fetching.consecutiveFailures).toBe(0)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events: early, state: historyStart })))
    )
  })

  it.effect("a transient failure resolving the source or listing buckets at start is retried", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 2)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          supervision,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* source.failNext(1, { call: "resolve" })
        yield* source.failNext(2, { call: "timeBuckets" })
        const starting = yield* pump.start.pipe(Effect.forkChild)
        yield* advanceUntil("start returns", () => starting.pollUnsafe() !== undefined)
        yield* Fiber.join(starting)
        yield* idle
        expect(handled).toEqual(events.map((event) => event.eventId))
        const calls = yield* source.calls
        expect(calls.resolve).toBe(2)
        expect(calls.timeBuckets).toBeGreaterThanOrEqual(3)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a start that fails on a non-retryable source error leaves the pump stopped and startable", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 2)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          supervision,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* source.failNext(1, { call: "timeBuckets", error: unauthorized })
        expect(yield* Effect.flip(pump.start)).toBe(unauthorized)
        expect(yield* pump.isRunning).toBe(false)
        yield* pump.start
        yield* idle
        expect(handled).toEqual(events.map((event) => event.eventId))
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a restart that fails leaves the pump stopped, not running without a generation", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 2)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          supervision,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* pump.start
        yield* idle
        expect(handled).toHaveLength(2)
        yield* source.failNext(1, { call: "timeBuckets", error: unauthorized })
        expect(yield* Effect.flip(pump.restart(historyStart))).toBe(unauthorized)
        expect(yield* pump.isRunning).toBe(false)
        yield* pump.awaitStopped
        // Startable again: the failed restart left nothing behind.
        yield* pump.restart(historyStart)
        yield* idle
        expect(handled).toHaveLength(4)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("malformed pages are retried and never corrupt the buffer or the checkpoint", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 12)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          bufferSize: 4,
          supervision,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* source.malformNext(3)
        yield* pump.start
        yield* idle
        const during = yield* pump.snapshot
        expect(during.health.fetching.lastError).toContain("not a valid Flowcore event")
        expect(during.buffer.depth).toBe(0)
        expect(handled).toEqual([])

        yield* advanceUntil("every event is handled", () => handled.length === events.length)
        yield* TestClock.adjust("1 minute")
        expect(handled).toEqual(events.map((event) => event.eventId))
        const last = events[events.length - 1] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
        expect((yield* pump.snapshot).counters).toMatchObject({ fetchRetries: 3, acknowledged: events.length })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("failing checkpoint saves are retried and the checkpoint never passes an unsettled event", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 4)
    const [e0, e1, e2, e3] = events as [FlowcoreEvent, FlowcoreEvent, FlowcoreEvent, FlowcoreEvent]
    return atNow(
      Effect.gen(function* () {
        const memory = yield* MemoryStateStore
        const pump = yield* DataPump.make({ bufferSize: 10, supervision, achknowledgeTimeoutMs: 3_600_000 })
        yield* pump.start
        yield* idle
        const delivery = yield* pump.reserveDelivery(10)
        const settled = new Set<string>()
        const ack = (event: FlowcoreEvent) =>
          Effect.gen(function* () {
            expect(yield* pump.acknowledge([event.eventId], delivery.deliveryId)).toBe(1)
            settled.add(event.eventId)
          })

        yield* memory.failNextSaves(3)
        yield* ack(e0)
        yield* ack(e2)
        yield* idle
        const during = yield* pump.snapshot
        expect(during.health.checkpointing.consecutiveFailures).toBe(1)
        expect(during.health.checkpointing.lastError).toContain("failNextSaves")
        expect(yield* savedState).toEqual(historyStart)

        yield* advanceUntil("a save succeeds", () => Effect.map(memory.saves, (saves) => saves > 0))
        expect(yield* savedState).toEqual({ timeBucket: e0.timeBucket, eventId: e0.eventId })
        const after = yield* pump.snapshot
        expect(after.counters.checkpointFailures).toBe(3)
        expect(after.health.checkpointing.consecutiveFailures).toBe(0)

        yield* memory.failNextSaves(2)
        yield* ack(e3)
        yield* ack(e1)
        yield* advanceUntil("the last event is saved", () =>
          Effect.map(memory.get, (saved) => Option.getOrUndefined(saved)?.eventId === e3.eventId)
        )
        for (const saved of yield* memory.history) assertCheckpointCovers(saved, events, settled)
        expect((yield* pump.snapshot).counters.checkpointFailures).toBe(5)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a fatal checkpoint save error ends the run with that StateStoreError", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 3)
    return atNow(
      Effect.gen(function* () {
        yield* MemoryStateStore.use((memory) => memory.failNextSaves(1, { fatal: true }))
        const run = yield* DataPump.run({ processor: { handleEvent: () => Effect.void } }).pipe(Effect.forkChild)
        yield* advanceUntil("the run ends", () => run.pollUnsafe() !== undefined, { maxSteps: 100 })
        const error = yield* Effect.flip(Fiber.join(run))
        expect(error._tag).toBe("StateStoreError")
        if (error._tag === "StateStoreError") {
          expect(error.fatal).toBe(true)
          expect(error.message).toContain("failNextSaves")
        }
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})
