/**
 * Guarantees 4 and 5 of design.md §4: redelivery with real (growing, jittered, capped) backoff and final failure
 * handling; no double delivery while running (handler timeouts, pull-mode reservation expiry).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import type { Processor } from "../../src/pump/PumpOptions.ts"
import { advanceUntil, atNow, eventsFrom, HOUR, idle, NOW, savedState, testLayers } from "./harness.ts"

const historyStart: PumpState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }

/**
 * Starts a pump (buffer 10, handlerTimeoutMs 1000, redeliveries after 100 ms) with `processor` and runs the clock
 * until every event is acknowledged; returns the pump, still running.
 */
const runUntilAcknowledged = (events: ReadonlyArray<FlowcoreEvent>, processor: Processor<never>) =>
  Effect.gen(function* () {
    const pump = yield* DataPump.make({
      bufferSize: 10,
      handlerTimeoutMs: 1000,
      redelivery: { baseDelayMs: 100, maxDelayMs: 100 },
      processor
    })
    yield* pump.start
    yield* advanceUntil("every event is acknowledged", () =>
      Effect.map(pump.snapshot, (snapshot) => snapshot.counters.acknowledged === events.length)
    )
    return pump
  })

class Boom {
  readonly _tag = "Boom"
}

describe("guarantee 4: redelivery with backoff", () => {
  it.effect(
    "redelivers a failing handler after growing, jittered, capped delays, exactly maxRedeliveryCount times",
    () => {
      const events = eventsFrom(NOW - 2 * HOUR, 1)
      return atNow(
        Effect.gen(function* () {
          const deliveries: Array<{ readonly at: number; readonly attempt: number }> = []
          const finallyFailed: Array<{ readonly at: number; readonly ids: ReadonlyArray<string> }> = []
          const pump = yield* DataPump.make({
            bufferSize: 10,
            maxRedeliveryCount: 4,
            redelivery: { baseDelayMs: 1000, maxDelayMs: 5000 },
            processor: {
              handleEvent: (_event, { attempt }) =>
                Effect.flatMap(Clock.currentTimeMillis, (at) => {
                  deliveries.push({ at, attempt })
                  return Effect.fail(new Boom())
                }),
              failedHandler: (failed) =>
                Effect.flatMap(Clock.currentTimeMillis, (at) =>
                  Effect.sync(() => void finallyFailed.push({ at, ids: failed.map((event) => event.eventId) }))
                )
            }
          })
          yield* pump.start
          yield* advanceUntil("the event finally fails", () => finallyFailed.length > 0, { stepMs: 50 })
          yield* TestClock.adjust("10 minutes")

          expect(deliveries.map((delivery) => delivery.attempt)).toEqual([1, 2, 3, 4, 5])
          const delays = deliveries.slice(1).map((delivery, i) => delivery.at - (deliveries[i]?.at ?? 0))
          // exponential from 1000 ms, each delay x0.8..1.2, never above the 5000 ms cap
          expect(delays[0]).toBeGreaterThanOrEqual(800)
          expect(delays[0]).toBeLessThanOrEqual(1200)
          expect(delays[1]).toBeGreaterThanOrEqual(1600)
          expect(delays[1]).toBeLessThanOrEqual(2400)
          expect(delays[2]).toBeGreaterThanOrEqual(3200)
          expect(delays[2]).toBeLessThanOrEqual(4800)
          expect(delays[3]).toBe(5000)
          for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThan(delays[i - 1] ?? 0)

          expect(finallyFailed).toEqual([{ at: deliveries[4]?.at, ids: [events[0]?.eventId] }])
          const snapshot = yield* pump.snapshot
          expect(snapshot.counters.redelivered).toBe(4)
          expect(snapshot.counters.failed).toBe(1)
          yield* pump.stop
        }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
      )
    }
  )

  it.effect(
    "awaits the failed handler and then the onFinalyFailed listeners before the checkpoint passes the event",
    () => {
      const events = eventsFrom(NOW - 2 * HOUR, 2)
      const [poison, healthy] = events as [FlowcoreEvent, FlowcoreEvent]
      return atNow(
        Effect.gen(function* () {
          const failedHandlerGate = yield* Deferred.make<void>()
          const listenerGate = yield* Deferred.make<void>()
          const calls: Array<string> = []
          const pump = yield* DataPump.make({
            bufferSize: 10,
            maxRedeliveryCount: 1,
            redelivery: { baseDelayMs: 100 },
            processor: {
              handleEvent: (event) => (event.eventId === poison.eventId ? Effect.fail(new Boom()) : Effect.void),
              failedHandler: (failed) =>
                Effect.sync(() => calls.push(`failedHandler:${failed.length}`)).pipe(
                  Effect.andThen(Deferred.await(failedHandlerGate)),
                  Effect.andThen(Effect.sync(() => calls.push("failedHandler:done")))
                )
            }
          })
          yield* pump.onFinalyFailed((failed) =>
            Effect.sync(() => calls.push(`listener:${failed.length}`)).pipe(
              Effect.andThen(Deferred.await(listenerGate)),
              Effect.andThen(Effect.sync(() => calls.push("listener:done")))
            )
          )
          yield* pump.start
          yield* advanceUntil("the failed handler runs", () => calls.length > 0, { stepMs: 50 })
          yield* TestClock.adjust("1 minute")
          expect(calls).toEqual(["failedHandler:1"])
          expect(yield* savedState).toEqual(historyStart)
          expect((yield* pump.snapshot).counters.failed).toBe(0)

          yield* Deferred.succeed(failedHandlerGate, undefined)
          yield* idle
          expect(calls).toEqual(["failedHandler:1", "failedHandler:done", "listener:1"])
          expect(yield* savedState).toEqual(historyStart)
          expect((yield* pump.snapshot).counters.failed).toBe(0)

          yield* Deferred.succeed(listenerGate, undefined)
          yield* idle
          expect(calls).toEqual(["failedHandler:1", "failedHandler:done", "listener:1", "listener:done"])
          expect(yield* savedState).toEqual({ timeBucket: healthy.timeBucket, eventId: healthy.eventId })
          expect((yield* pump.snapshot).counters.failed).toBe(1)
          yield* pump.stop
        }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
      )
    }
  )

  it.effect("maxRedeliveryCount -1 redelivers forever and never calls the failed handler", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 1)
    return atNow(
      Effect.gen(function* () {
        let lastAttempt = 0
        let failedHandlerCalls = 0
        const pump = yield* DataPump.make({
          bufferSize: 10,
          maxRedeliveryCount: -1,
          redelivery: { baseDelayMs: 100, maxDelayMs: 1000 },
          processor: {
            handleEvent: (_event, { attempt }) => {
              lastAttempt = attempt
              return attempt < 60 ? Effect.fail(new Boom()) : Effect.void
            },
            failedHandler: () => Effect.sync(() => void failedHandlerCalls++)
          }
        })
        yield* pump.start
        yield* advanceUntil("the 60th delivery succeeds", () => lastAttempt === 60, { stepMs: 500 })
        yield* idle
        const snapshot = yield* pump.snapshot
        expect(failedHandlerCalls).toBe(0)
        expect(snapshot.counters).toMatchObject({ acknowledged: 1, failed: 0, redelivered: 59 })
        expect(yield* savedState).toEqual({ timeBucket: events[0]?.timeBucket, eventId: events[0]?.eventId })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})

describe("guarantee 5: no double delivery while running", () => {
  it.effect("a handler that exceeds handlerTimeoutMs is interrupted and counts as a failed delivery", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 1)
    return atNow(
      Effect.gen(function* () {
        const log: Array<string> = []
        const pump = yield* DataPump.make({
          bufferSize: 10,
          handlerTimeoutMs: 1000,
          drainTimeoutMs: 0,
          redelivery: { baseDelayMs: 200 },
          processor: {
            handleEvent: (_event, { attempt }) =>
              Effect.flatMap(Clock.currentTimeMillis, (at) => {
                log.push(`start:${attempt}@${at - NOW}`)
                return attempt === 1
                  ? Effect.sleep("1 hour").pipe(
                      Effect.onInterrupt(() =>
                        Effect.flatMap(Clock.currentTimeMillis, (now) =>
                          Effect.sync(() => log.push(`interrupted:1@${now - NOW}`))
                        )
                      )
                    )
                  : Effect.void
              })
          }
        })
        yield* pump.start
        yield* advanceUntil("the redelivery is acknowledged", () =>
          Effect.map(pump.snapshot, (snapshot) => snapshot.counters.acknowledged === 1)
        )
        expect(log.slice(0, 2)).toEqual(["start:1@0", "interrupted:1@1000"])
        expect(log).toHaveLength(3)
        expect(log[2]).toMatch(/^start:2@/)
        expect((yield* pump.snapshot).counters).toMatchObject({ redelivered: 1, failed: 0, acknowledged: 1 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("never hands an event to a second handler while the first is still running, even past its timeout", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 6)
    return atNow(
      Effect.gen(function* () {
        const running = new Map<string, number>()
        let overlaps = 0
        const spans: Array<{ readonly id: string; readonly attempt: number; start: number; end: number }> = []
        const pump = yield* DataPump.make({
          bufferSize: 10,
          handlerTimeoutMs: 1000,
          maxRedeliveryCount: 2,
          redelivery: { baseDelayMs: 100 },
          processor: {
            concurrency: 4,
            handleEvent: (event, { attempt }) =>
              Effect.gen(function* () {
                const id = event.eventId
                spans.push({ id, attempt, start: yield* Clock.currentTimeMillis, end: 0 })
                running.set(id, (running.get(id) ?? 0) + 1)
                if ((running.get(id) ?? 0) > 1) overlaps++
                // The first attempt ignores interruption and outlives its timeout by far.
                if (attempt === 1) yield* Effect.uninterruptible(Effect.sleep("5 seconds"))
              }).pipe(
                Effect.ensuring(
                  Effect.flatMap(Clock.currentTimeMillis, (now) =>
                    Effect.sync(() => {
                      running.set(event.eventId, (running.get(event.eventId) ?? 1) - 1)
                      const span = spans.findLast((s) => s.id === event.eventId && s.attempt === attempt)
                      if (span !== undefined) span.end = now
                    })
                  )
                )
              )
          }
        })
        yield* pump.start
        yield* advanceUntil("every event is acknowledged", () =>
          Effect.map(pump.snapshot, (snapshot) => snapshot.counters.acknowledged === events.length)
        )
        expect(overlaps).toBe(0)
        for (const event of events) {
          const attempts = spans.filter((span) => span.id === event.eventId)
          expect(attempts.map((span) => span.attempt)).toEqual([1, 2])
          expect(attempts[1]?.start).toBeGreaterThanOrEqual(attempts[0]?.end ?? Number.POSITIVE_INFINITY)
        }
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("each handler call times out handlerTimeoutMs after its own start, not on a shared tick", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 3)
    const [first, second] = events as [FlowcoreEvent, FlowcoreEvent, FlowcoreEvent]
    return atNow(
      Effect.gen(function* () {
        const log: Array<string> = []
        const stamp = (what: string) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => log.push(`${what}@${now - NOW}`)))
        const pump = yield* DataPump.make({
          bufferSize: 10,
          handlerTimeoutMs: 1000,
          drainTimeoutMs: 0,
          redelivery: { baseDelayMs: 10_000, maxDelayMs: 10_000 },
          processor: {
            concurrency: 2,
            handleEvent: (event, { attempt }) => {
              if (attempt > 1) return Effect.void
              const name = event === first ? "first" : event === second ? "second" : "third"
              // The second finishes after 400 ms, so the third starts then and is due at 1400 ms, not at 1000 ms.
              const work = event === second ? Effect.sleep("400 millis") : Effect.never
              return work.pipe(Effect.onInterrupt(() => stamp(`${name} interrupted`)))
            }
          }
        })
        yield* pump.start
        yield* advanceUntil("the second run of the timed-out events is acknowledged", () =>
          Effect.map(pump.snapshot, (snapshot) => snapshot.counters.acknowledged === 3)
        )
        expect(log).toEqual(["first interrupted@1000", "third interrupted@1400"])
        expect((yield* pump.snapshot).counters).toMatchObject({ redelivered: 2, failed: 0, acknowledged: 3 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a timed-out batch is redelivered and its worker goes on with the next batches", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 6)
    return atNow(
      Effect.gen(function* () {
        const log: Array<string> = []
        const pump = yield* runUntilAcknowledged(events, {
          concurrency: 2,
          handler: (batch) =>
            Effect.suspend(() => {
              log.push(batch.map((event) => events.indexOf(event)).join("+"))
              // The first batch hangs; its events' redeliveries do not.
              return log.length === 1 ? Effect.never : Effect.void
            })
        })
        // The batches behind it are handled by the same (respawned) worker, then its events come back.
        expect(log.slice(0, 3)).toEqual(["0+1", "2+3", "4+5"])
        // Each redelivery is jittered on its own: they may come back in either order, together or apart.
        expect(
          log
            .slice(3)
            .flatMap((entry) => entry.split("+"))
            .sort()
        ).toEqual(["0", "1"])
        expect((yield* pump.snapshot).counters).toMatchObject({ redelivered: 2, failed: 0, acknowledged: 6 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("with an ordering key, a timed-out event holds back its key only, and its worker carries on", () => {
    const keys = ["a", "a", "b", "b"]
    const events = eventsFrom(NOW - 2 * HOUR, keys.length)
    const keyOf = (event: FlowcoreEvent) => keys[events.indexOf(event)] as string
    return atNow(
      Effect.gen(function* () {
        const log: Array<string> = []
        const pump = yield* runUntilAcknowledged(events, {
          concurrency: 1,
          orderingKey: keyOf,
          handleEvent: (event, { attempt }) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => {
              const index = events.indexOf(event)
              log.push(`${index}#${attempt}@${now - NOW}`)
              return index === 0 && attempt === 1 ? Effect.never : Effect.void
            })
        })
        const order = log.map((entry) => entry.split("@")[0])
        // One worker: key b runs while key a waits for the redelivery of its first event, which precedes event 1.
        expect(order).toEqual(["0#1", "2#1", "3#1", "0#2", "1#1"])
        expect(log[1]).toBe("2#1@1000")
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("an uninterruptible handler that finishes after its deadline still counts as timed out", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 1)
    return atNow(
      Effect.gen(function* () {
        const attempts: Array<number> = []
        const pump = yield* runUntilAcknowledged(events, {
          handleEvent: (_event, { attempt }) =>
            Effect.uninterruptible(
              Effect.sync(() => attempts.push(attempt)).pipe(
                Effect.andThen(attempt === 1 ? Effect.sleep("3 seconds") : Effect.void)
              )
            )
        })
        expect(attempts).toEqual([1, 2])
        expect((yield* pump.snapshot).counters).toMatchObject({ redelivered: 1, acknowledged: 1 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a sequential batch that times out is interrupted and retried in place", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 2)
    return atNow(
      Effect.gen(function* () {
        const log: Array<string> = []
        let calls = 0
        const pump = yield* DataPump.make({
          bufferSize: 10,
          handlerTimeoutMs: 1000,
          redelivery: { baseDelayMs: 100, maxDelayMs: 100 },
          processor: {
            concurrency: 5,
            sequential: true,
            handler: (batch) =>
              Effect.suspend(() => {
                calls++
                const call = calls
                return Effect.flatMap(Clock.currentTimeMillis, (now) => {
                  log.push(`call ${call} with ${batch.length}@${now - NOW}`)
                  return call === 1
                    ? Effect.never.pipe(
                        Effect.onInterrupt(() => Effect.sync(() => log.push(`call ${call} interrupted`)))
                      )
                    : Effect.void
                })
              })
          }
        })
        yield* pump.start
        yield* advanceUntil("the retried batch is acknowledged", () =>
          Effect.map(pump.snapshot, (snapshot) => snapshot.counters.acknowledged === 2)
        )
        expect(log[0]).toBe("call 1 with 2@0")
        expect(log[1]).toBe("call 1 interrupted")
        // Retried in place after the backoff that follows the timeout at 1000 ms.
        expect(log[2]).toMatch(/^call 2 with 2@/)
        expect(Number(log[2]?.split("@")[1])).toBeGreaterThan(1000)
        expect(log).toHaveLength(3)
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a pull-mode reservation expires after achknowledgeTimeoutMs and is then redelivered", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 1)
    const [only] = events as [FlowcoreEvent]
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({
          bufferSize: 10,
          achknowledgeTimeoutMs: 2000,
          redelivery: { baseDelayMs: 100, maxDelayMs: 100 }
        })
        yield* pump.start
        yield* idle
        const first = yield* pump.reserveDelivery(5)
        expect(first.events.map((event) => event.eventId)).toEqual([only.eventId])
        expect(first.attempts).toEqual([1])

        const second = yield* pump.reserveDelivery(5).pipe(Effect.forkChild)
        yield* TestClock.adjust(1999)
        yield* idle
        expect(second.pollUnsafe()).toBeUndefined()
        expect((yield* pump.snapshot).buffer.reserved).toBe(1)

        // Expired at 2000 ms, re-opened after the (fixed) 100 ms redelivery delay.
        yield* TestClock.adjust(1)
        yield* idle
        expect((yield* pump.snapshot).buffer.reserved).toBe(0)
        expect(second.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust(100)
        const redelivered = yield* Fiber.join(second)
        expect(redelivered.events.map((event) => event.eventId)).toEqual([only.eventId])
        expect(redelivered.attempts).toEqual([2])
        expect(redelivered.deliveryId).not.toBe(first.deliveryId)

        expect(yield* pump.acknowledge([only.eventId], first.deliveryId)).toBe(0)
        expect(yield* pump.acknowledge([only.eventId], redelivered.deliveryId)).toBe(1)
        yield* idle
        expect(yield* savedState).toEqual({ timeBucket: only.timeBucket, eventId: only.eventId })
        expect((yield* pump.snapshot).counters).toMatchObject({ redelivered: 1, acknowledged: 1 })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })
})
