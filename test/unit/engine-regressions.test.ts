/**
 * Regression tests for the defects of data-pump 0.22.1 listed in flowcore-protocol.md §11, each named after what it
 * protects. (Items 3, 4 and 7 live with the reading guarantees in engine-reading.test.ts.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { StateStoreError } from "../../src/domain/errors.ts"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { StateStore } from "../../src/services/StateStore.ts"
import {
  advanceUntil,
  atNow,
  countingMetrics,
  eventsFrom,
  HOUR,
  idle,
  NOW,
  savedState,
  testLayers,
  withSleepCounter
} from "./harness.ts"

const historyStart: PumpState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }

class Boom {
  readonly _tag = "Boom"
}

describe("defect §11.1: crash/resume must not skip the oldest unacknowledged event", () => {
  it.effect("after acks of every event but the first, a resumed pump delivers the first one again", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 5)
    const [oldest, ...rest] = events as [FlowcoreEvent, ...Array<FlowcoreEvent>]
    const crashImage = atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({ bufferSize: 10 })
        yield* pump.start
        yield* idle
        const delivery = yield* pump.reserveDelivery(10)
        yield* pump.acknowledge(
          rest.map((event) => event.eventId),
          delivery.deliveryId
        )
        yield* idle
        return yield* savedState
      }).pipe(Effect.scoped, Effect.provide(testLayers({ events, state: historyStart })))
    )
    return Effect.gen(function* () {
      const image = yield* crashImage
      expect(image?.eventId).not.toBe(oldest.eventId)
      const redelivered = yield* atNow(
        Effect.gen(function* () {
          const pump = yield* DataPump.make({ bufferSize: 10 })
          yield* pump.start
          yield* idle
          return (yield* pump.reserveDelivery(10)).events.map((event) => event.eventId)
        }).pipe(Effect.scoped, Effect.provide(testLayers({ events, state: image ?? historyStart })))
      )
      expect(redelivered[0]).toBe(oldest.eventId)
    })
  })
})

describe("defect §11.8: restart() while stopped must not leave a pending restart behind", () => {
  it.effect("restart while stopped runs from the state, stop really stops, and a later start handles events", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 4)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const handled: Array<number> = []
        const pump = yield* DataPump.make({
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(Number(event.payload.n))) }
        })
        yield* pump.start
        yield* idle
        yield* pump.stop
        expect(handled).toEqual([0, 1, 2, 3])

        yield* pump.restart({ timeBucket: historyStart.timeBucket })
        yield* idle
        expect(yield* pump.isRunning).toBe(true)
        expect(handled).toEqual([0, 1, 2, 3, 0, 1, 2, 3])
        yield* pump.stop
        expect(yield* pump.isRunning).toBe(false)
        const callsAfterStop = yield* source.calls
        yield* TestClock.adjust("1 hour")
        expect(yield* source.calls).toEqual(callsAfterStop)

        // A plain start continues from the saved checkpoint and its handler is called.
        yield* source.append([{ eventType: "created", payload: { n: 4 } }])
        yield* pump.start
        yield* idle
        expect(handled).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 4])
        yield* pump.stop
        const callsAfterSecondStop = yield* source.calls
        yield* TestClock.adjust("1 hour")
        expect(yield* source.calls).toEqual(callsAfterSecondStop)
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})

describe("defect §11.9: handlers never get an empty batch", () => {
  it.effect("batch handlers see only non-empty batches, live, and around stop() and restart()", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 7)
    return atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const notifier = yield* ManualNotifier
        const batches: Array<number> = []
        const pump = yield* DataPump.make({
          drainTimeoutMs: 500,
          processor: {
            concurrency: 3,
            handler: (batch) =>
              Effect.sync(() => batches.push(batch.length)).pipe(Effect.andThen(Effect.sleep("100 millis")))
          }
        })
        // Drains run on the TestClock: moving it means a processor that kept calling the handler cannot hang this.
        const withClockMoving = <A, E>(control: Effect.Effect<A, E>) =>
          Effect.gen(function* () {
            const fiber = yield* control.pipe(Effect.forkChild)
            yield* TestClock.adjust("1 second")
            return yield* Fiber.join(fiber)
          })
        const stop = withClockMoving(pump.stop)
        yield* pump.start
        yield* TestClock.adjust("1 second")
        // Stop while the processor waits for events (live, buffer empty).
        yield* stop
        yield* pump.start
        yield* source.append([{ eventType: "created" }, { eventType: "updated" }])
        yield* notifier.notify
        yield* TestClock.adjust("1 second")
        yield* withClockMoving(pump.restart(historyStart))
        // Stop while a batch is in flight.
        yield* source.append([{ eventType: "created" }])
        yield* notifier.notify
        yield* idle
        yield* stop
        expect(yield* pump.reserve(5)).toEqual([])
        expect(batches.length).toBeGreaterThan(4)
        expect(batches.every((size) => size > 0)).toBe(true)
        expect(batches.reduce((sum, size) => sum + size, 0)).toBe(events.length + 2 + events.length + 3)
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a pull-mode reserve pending at stop() returns an empty delivery instead of hanging", () =>
    atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({})
        yield* pump.start
        const pending = yield* pump.reserveDelivery(5).pipe(Effect.forkChild)
        yield* idle
        expect(pending.pollUnsafe()).toBeUndefined()
        yield* pump.stop
        expect((yield* Fiber.join(pending)).events).toEqual([])
      }).pipe(Effect.provide(testLayers({ state: historyStart })))
    )
  )
})

describe("defect §11.11: O(1) work per acknowledgement", () => {
  it.effect("reserving and acking 10,000 buffered events one by one reads each event a bounded number of times", () => {
    const count = 10_000
    let reads = 0
    // Every property read of an event is counted: a scan of the buffer or a re-serialisation per ack would make
    // the total grow with count², a constant amount of work per ack keeps it linear.
    const events = eventsFrom(NOW - 2 * HOUR, count, 100).map(
      (event) =>
        new Proxy(event, {
          get: (target, key, receiver) => {
            reads++
            return Reflect.get(target, key, receiver)
          }
        })
    )
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({ bufferSize: count, maxPageSize: 1000, achknowledgeTimeoutMs: 3_600_000 })
        yield* pump.start
        yield* advanceUntil("the buffer is full", () =>
          Effect.map(pump.snapshot, (snapshot) => snapshot.buffer.depth === count)
        )

        reads = 0
        const delivery = yield* pump.reserveDelivery(count)
        expect(delivery.events).toHaveLength(count)
        const reserveReads = reads

        reads = 0
        // Reverse order: the watermark cannot move until the very last ack, then moves over everything at once.
        for (let i = count - 1; i >= 0; i--) {
          const event = delivery.events[i] as FlowcoreEvent
          yield* pump.acknowledge([event.eventId], delivery.deliveryId)
        }
        yield* idle
        const ackReads = reads

        reads = 0
        for (let i = 0; i < 100; i++) yield* pump.snapshot
        const snapshotReads = reads

        const last = events[count - 1] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
        expect((yield* pump.snapshot).counters.acknowledged).toBe(count)
        expect(reserveReads).toBeLessThanOrEqual(10 * count)
        expect(ackReads).toBeLessThanOrEqual(10 * count)
        expect(snapshotReads).toBe(0)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})

describe("defect §11.12: no timer or fiber keeps running", () => {
  it.effect("after stop() no sleep is pending and nothing happens however far the clock moves", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 4)
    return atNow(
      withSleepCounter((sleeps) =>
        Effect.gen(function* () {
          const source = yield* InMemoryDataSource
          const notifier = yield* ManualNotifier
          const memory = yield* MemoryStateStore
          const pump = yield* DataPump.make({ bufferSize: 10, redelivery: { baseDelayMs: 60_000 } })
          yield* pump.start
          yield* idle
          // A reservation with its expiry timer, a failed event in backoff, the fetcher in its live wait.
          const held = yield* pump.reserveDelivery(2)
          const failing = yield* pump.reserveDelivery(1)
          yield* pump.fail(
            failing.events.map((event) => event.eventId),
            failing.deliveryId
          )
          yield* idle
          expect(held.events).toHaveLength(2)
          expect(sleeps.pending()).toBeGreaterThanOrEqual(3)

          yield* pump.stop
          yield* pump.awaitStopped
          expect(sleeps.pending()).toBe(0)
          const before = {
            calls: yield* source.calls,
            waits: yield* notifier.waits,
            saves: yield* memory.saves,
            snapshot: yield* pump.snapshot
          }
          yield* TestClock.adjust("1 day")
          yield* idle
          expect({
            calls: yield* source.calls,
            waits: yield* notifier.waits,
            saves: yield* memory.saves,
            snapshot: yield* pump.snapshot
          }).toEqual({ ...before, snapshot: { ...before.snapshot, uptimeMs: before.snapshot.uptimeMs + 24 * HOUR } })
          expect(sleeps.pending()).toBe(0)
        })
      ).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("an acknowledged reservation cancels its expiry timer", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 4)
    return atNow(
      withSleepCounter((sleeps) =>
        Effect.gen(function* () {
          const pump = yield* DataPump.make({ bufferSize: 10, achknowledgeTimeoutMs: 60_000 })
          yield* pump.start
          yield* idle
          const baseline = sleeps.pending()
          const first = yield* pump.reserveDelivery(2)
          const second = yield* pump.reserveDelivery(2)
          expect(sleeps.pending()).toBe(baseline + 2)
          yield* pump.acknowledge(
            first.events.map((event) => event.eventId),
            first.deliveryId
          )
          yield* idle
          expect(sleeps.pending()).toBe(baseline + 1)
          // Partly settled deliveries keep their timer for the rest.
          const [ackNow, failLater] = second.events as [FlowcoreEvent, FlowcoreEvent]
          yield* pump.acknowledge([ackNow.eventId], second.deliveryId)
          yield* idle
          expect(sleeps.pending()).toBe(baseline + 1)
          yield* pump.fail([failLater.eventId], second.deliveryId)
          yield* idle
          // The failed event's redelivery backoff replaces the expiry timer.
          expect(sleeps.pending()).toBe(baseline + 1)
          yield* pump.stop
          expect(sleeps.pending()).toBe(0)
        })
      ).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})

describe("defect §11.13: concurrent reservers each get their own wait", () => {
  it.effect("three reservers waiting at once each receive their own events and none hangs", () =>
    atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const notifier = yield* ManualNotifier
        const pump = yield* DataPump.make({ bufferSize: 20 })
        yield* pump.start
        yield* idle
        const reservers = yield* Effect.forEach([1, 2, 3], () => pump.reserveDelivery(2).pipe(Effect.forkChild))
        yield* idle
        expect(reservers.every((fiber) => fiber.pollUnsafe() === undefined)).toBe(true)

        // Fewer events than waiters: whoever does not get one keeps waiting.
        yield* source.append([{ eventType: "created" }, { eventType: "created" }])
        yield* notifier.notify
        yield* idle
        yield* source.append([{ eventType: "created" }, { eventType: "updated" }, { eventType: "created" }])
        yield* notifier.notify
        yield* idle
        yield* source.append([{ eventType: "updated" }])
        yield* notifier.notify
        yield* idle
        expect(reservers.every((fiber) => fiber.pollUnsafe() !== undefined)).toBe(true)

        const deliveries = yield* Effect.forEach(reservers, Fiber.join)
        const ids = deliveries.flatMap((delivery) => delivery.events.map((event) => event.eventId))
        expect(new Set(ids).size).toBe(ids.length)
        expect(deliveries.every((delivery) => delivery.events.length > 0)).toBe(true)
        expect(new Set(deliveries.map((delivery) => delivery.deliveryId)).size).toBe(3)
        const all = (yield* source.events).map((event) => event.eventId)
        const rest = yield* pump.reserve(10)
        expect([...ids, ...rest.map((event) => event.eventId)].sort()).toEqual([...all].sort())
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ state: { timeBucket: TimeBucket.fromDate(NOW) } })))
    )
  )
})

describe("defect §11.14: a stale acknowledgement after expiry is ignored", () => {
  it.effect(
    "a late ack (or fail) with an expired deliveryId does not touch events now reserved by another consumer",
    () => {
      const events = eventsFrom(NOW - 2 * HOUR, 2)
      const ids = events.map((event) => event.eventId)
      return atNow(
        Effect.gen(function* () {
          const pump = yield* DataPump.make({
            bufferSize: 10,
            achknowledgeTimeoutMs: 1000,
            redelivery: { baseDelayMs: 100, maxDelayMs: 100 }
          })
          yield* pump.start
          yield* idle
          const late = yield* pump.reserveDelivery(10)
          yield* TestClock.adjust(1100)
          const current = yield* pump.reserveDelivery(10)
          expect(current.events.map((event) => event.eventId).sort()).toEqual([...ids].sort())

          expect(yield* pump.acknowledge(ids, late.deliveryId)).toBe(0)
          expect(yield* pump.fail(ids, late.deliveryId)).toBe(0)
          yield* idle
          expect((yield* pump.snapshot).buffer.reserved).toBe(2)
          expect(yield* savedState).toEqual(historyStart)

          expect(yield* pump.acknowledge(ids, current.deliveryId)).toBe(2)
          yield* idle
          expect(yield* savedState).toEqual({ timeBucket: events[1]?.timeBucket, eventId: ids[1] })
          yield* pump.stop
        }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
      )
    }
  )
})

describe("defect §11.15: every final failure is handled and counted", () => {
  it.effect("push mode: failures past the limit call the failed handler and the listeners, and are counted", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 3)
    const metrics = countingMetrics()
    return atNow(
      Effect.gen(function* () {
        const failedHandler: Array<string> = []
        const listener: Array<string> = []
        const pump = yield* DataPump.make({
          maxRedeliveryCount: 1,
          redelivery: { baseDelayMs: 100 },
          processor: {
            concurrency: 3,
            handleEvent: () => Effect.fail(new Boom()),
            failedHandler: (failed) => Effect.sync(() => failedHandler.push(...failed.map((event) => event.eventId)))
          }
        })
        yield* pump.onFinalyFailed((failed) => Effect.sync(() => listener.push(...failed.map((e) => e.eventId))))
        yield* pump.start
        yield* advanceUntil("every event finally failed", () => listener.length === events.length)
        const ids = events.map((event) => event.eventId)
        expect([...failedHandler].sort()).toEqual([...ids].sort())
        expect([...listener].sort()).toEqual([...ids].sort())
        expect((yield* pump.snapshot).counters).toMatchObject({ failed: 3, redelivered: 3, acknowledged: 0 })
        // The Prometheus side counts the same.
        expect(metrics.counts).toEqual({ failed: 3, redelivered: 3, acknowledged: 0 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart, metrics: metrics.layer })))
    )
  })

  it.effect(
    "pull mode: fail() past the limit and expired reservations past the limit reach the listeners and counters",
    () => {
      const events = eventsFrom(NOW - 2 * HOUR, 2)
      const [byFail, byExpiry] = events as [FlowcoreEvent, FlowcoreEvent]
      const metrics = countingMetrics()
      return atNow(
        Effect.gen(function* () {
          const listener: Array<string> = []
          const pump = yield* DataPump.make({
            maxRedeliveryCount: 1,
            achknowledgeTimeoutMs: 1000,
            redelivery: { baseDelayMs: 100, maxDelayMs: 100 }
          })
          yield* pump.onFinalyFailed((failed) => Effect.sync(() => listener.push(...failed.map((e) => e.eventId))))
          yield* pump.start
          yield* idle
          for (let delivery = 1; delivery <= 2; delivery++) {
            const reserved = yield* pump.reserveDelivery(10)
            expect(reserved.attempts).toEqual([delivery, delivery])
            // One event is failed explicitly, the other is left to expire.
            expect(yield* pump.fail([byFail.eventId], reserved.deliveryId)).toBe(1)
            yield* TestClock.adjust(1100)
          }
          yield* idle
          expect(listener).toEqual([byFail.eventId, byExpiry.eventId])
          expect((yield* pump.snapshot).counters).toMatchObject({ failed: 2, acknowledged: 0 })
          expect(metrics.counts).toEqual({ failed: 2, redelivered: 2, acknowledged: 0 })
          expect(yield* savedState).toEqual({ timeBucket: byExpiry.timeBucket, eventId: byExpiry.eventId })
          yield* pump.stop
        }).pipe(Effect.provide(testLayers({ events, state: historyStart, metrics: metrics.layer })))
      )
    }
  )
})

describe("failure accounting across generations", () => {
  it.effect("snapshot counters keep counting across restart() and stop()/start(), like the pulled counter", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 3)
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({
          maxRedeliveryCount: 0,
          processor: {
            handleEvent: (event) => (Number(event.payload.n) === 0 ? Effect.fail(new Boom()) : Effect.void)
          }
        })
        yield* pump.start
        yield* idle
        expect((yield* pump.snapshot).counters).toMatchObject({ pulled: 3, acknowledged: 2, failed: 1 })
        yield* pump.restart(historyStart)
        yield* idle
        expect((yield* pump.snapshot).counters).toMatchObject({ pulled: 6, acknowledged: 4, failed: 2 })
        yield* pump.stop
        expect((yield* pump.snapshot).counters).toMatchObject({ pulled: 6, acknowledged: 4, failed: 2 })
        yield* pump.restart(historyStart)
        yield* idle
        expect((yield* pump.snapshot).counters).toMatchObject({ pulled: 9, acknowledged: 6, failed: 3 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})

describe("defect §11.16: a failed start leaves the pump startable", () => {
  it.effect("a start whose state load fails can be followed by a start that succeeds", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 2)
    let loadFailures = 1
    // The memory store, except that its first load fails.
    const flakyLoad = Layer.effect(
      StateStore,
      Effect.gen(function* () {
        const inner = yield* StateStore
        return StateStore.of({
          ...inner,
          load: Effect.suspend(() => {
            if (loadFailures === 0) return inner.load
            loadFailures--
            return Effect.fail(
              new StateStoreError({ store: "flaky", operation: "load", message: "flaky: load failed on purpose" })
            )
          })
        })
      })
    )
    return atNow(
      Effect.gen(function* () {
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        const error = yield* Effect.flip(pump.start)
        expect(error._tag).toBe("StateStoreError")
        expect(yield* pump.isRunning).toBe(false)
        expect((yield* pump.snapshot).running).toBe(false)
        expect((yield* InMemoryDataSource.use((source) => source.calls)).fetchPage).toBe(0)

        yield* pump.start
        yield* idle
        expect(yield* pump.isRunning).toBe(true)
        expect(handled).toEqual(events.map((event) => event.eventId))
        yield* pump.stop
        expect(Option.getOrUndefined(yield* MemoryStateStore.use((memory) => memory.get))?.eventId).toBe(
          events[1]?.eventId
        )
      }).pipe(Effect.provide(Layer.provideMerge(flakyLoad, testLayers({ events, state: historyStart }))))
    )
  })
})
