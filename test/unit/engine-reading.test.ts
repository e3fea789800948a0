/**
 * Guarantee 8 of design.md §4: complete reading. Regressions for protocol §11 item 3 (stale bucket cache skips
 * buckets), item 7 (a future stopAt stops at the first empty page) and item 4 (late events at an hour rollover).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import {
  advanceUntil,
  atNow,
  eventAt,
  HOUR,
  idle,
  NOW,
  recordingFetches,
  testLayers,
  wrappingPages
} from "./harness.ts"

const MINUTE = 60_000
const at = (iso: string) => Date.parse(iso)

describe("guarantee 8: complete reading", () => {
  it.effect("reads a bucket created after start, before going live (defect §11.3: stale bucket cache)", () => {
    const early = [eventAt(at("2024-03-15T09:10:00Z")), eventAt(at("2024-03-15T10:10:00Z"))]
    const late = eventAt(at("2024-03-15T12:10:00Z"))
    return atNow(
      Effect.gen(function* () {
        const gate = yield* Deferred.make<void>()
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          // One slot: the fetcher waits for space while the first event is held at the gate.
          bufferSize: 1,
          processor: {
            handleEvent: (event) =>
              Deferred.await(gate).pipe(Effect.andThen(Effect.sync(() => handled.push(event.eventId))))
          }
        })
        yield* pump.start
        yield* idle
        const source = yield* InMemoryDataSource
        expect((yield* source.calls).timeBuckets).toBe(1)
        // Created after the pump listed the buckets, in an hour before the current one.
        yield* source.append([late])
        yield* Deferred.succeed(gate, undefined)
        yield* advanceUntil("the late bucket's event is handled", () => handled.length === 3)
        expect(handled).toEqual([...early, late].map((event) => event.eventId))

        const buckets = (yield* source.requests).map((request) => request.timeBucket)
        const current = TimeBucket.fromDate(NOW)
        expect(buckets).toContain(TimeBucket.make(late.timeBucket))
        expect(buckets.indexOf(TimeBucket.make(late.timeBucket))).toBeLessThan(buckets.indexOf(current))
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events: early, state: { timeBucket: TimeBucket.make("20240315090000") } })))
    )
  })

  it.effect("a future stopAt keeps delivering live events until that instant (defect §11.7)", () =>
    atNow(
      Effect.gen(function* () {
        const source = yield* InMemoryDataSource
        const notifier = yield* ManualNotifier
        const handled: Array<FlowcoreEvent> = []
        const run = yield* DataPump.run({
          stopAt: new Date(NOW + 10 * MINUTE),
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event)) }
        }).pipe(Effect.forkChild)
        const appendLive = (offsetMs: number) =>
          Effect.gen(function* () {
            yield* TestClock.adjust(NOW + offsetMs - (yield* Clock.currentTimeMillis))
            const [stored] = yield* source.append([{ eventType: "created", payload: { offsetMs } }])
            yield* notifier.notify
            yield* idle
            return stored as FlowcoreEvent
          })

        yield* TestClock.adjust(MINUTE)
        expect(run.pollUnsafe()).toBeUndefined()
        const first = yield* appendLive(2 * MINUTE)
        const second = yield* appendLive(10 * MINUTE - 1000)
        expect(handled.map((event) => event.eventId)).toEqual([first.eventId, second.eventId])
        expect(run.pollUnsafe()).toBeUndefined()

        // After stopAt: not delivered, and the run ends once the settle window has passed.
        yield* appendLive(10 * MINUTE + 1000)
        yield* TestClock.adjust(10 * MINUTE)
        yield* Fiber.join(run)
        expect(handled.map((event) => event.eventId)).toEqual([first.eventId, second.eventId])
      }).pipe(Effect.provide(testLayers({ state: { timeBucket: TimeBucket.fromDate(NOW) } })))
    )
  )

  it.effect("a stopAt before every bucket ends the run without walking the buckets (defect §11.7)", () => {
    const events = [eventAt(NOW - 3 * HOUR), eventAt(NOW - 2 * HOUR), eventAt(NOW - HOUR)]
    const stopAt = NOW - 10 * HOUR
    return atNow(
      Effect.gen(function* () {
        const handled: Array<string> = []
        const run = yield* DataPump.run({
          stopAt: new Date(stopAt),
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        }).pipe(Effect.forkChild)
        yield* TestClock.adjust(MINUTE)
        yield* Fiber.join(run)
        expect(handled).toEqual([])
        const requested = (yield* InMemoryDataSource.use((source) => source.requests)).map((r) => r.timeBucket)
        expect(requested.every((bucket) => bucket <= TimeBucket.fromDate(stopAt))).toBe(true)
      }).pipe(Effect.provide(testLayers({ events, state: { timeBucket: TimeBucket.fromDate(NOW - 12 * HOUR) } })))
    )
  })

  it.effect(
    "an event that becomes visible in the previous hour within rolloverSettleMs is delivered (defect §11.4)",
    () =>
      atNow(
        Effect.gen(function* () {
          const source = yield* InMemoryDataSource
          const handled: Array<FlowcoreEvent> = []
          const pump = yield* DataPump.make({
            rolloverSettleMs: 5000,
            processor: { handleEvent: (event) => Effect.sync(() => handled.push(event)) }
          })
          const [late] = yield* source.append([
            // Written at 14:59:59.5 but visible to readers only at 15:00:03 (write latency).
            { eventType: "created", at: at("2024-03-15T14:59:59.500Z"), visibleAt: at("2024-03-15T15:00:03Z") }
          ])
          yield* pump.start
          const reach = (iso: string) =>
            advanceUntil(
              `the clock reaches ${iso}`,
              () => Effect.map(Clock.currentTimeMillis, (now) => now >= at(iso)),
              {
                stepMs: 30_000
              }
            )
          yield* reach("2024-03-15T15:10:00Z")
          const [next] = yield* source.append([{ eventType: "created" }])
          yield* ManualNotifier.use((notifier) => notifier.notify)
          yield* reach("2024-03-15T15:15:00Z")
          expect(handled.map((event) => event.eventId)).toEqual([late?.eventId, next?.eventId])
          expect(handled[0]?.timeBucket).toBe("20240315140000")
          yield* pump.stop
        }).pipe(Effect.provide(testLayers({ state: { timeBucket: TimeBucket.fromDate(NOW) } })))
      )
  )

  it.effect("a page read ahead before its hour ended does not end the bucket: it is read again (late events)", () => {
    // Bucket 13:00, read at 14:20; its last page comes from a request made at 13:59:58, before the last event was
    // written. Leaving the bucket on that page would lose the event: the page shows the bucket as of 13:59:58.
    const events = [eventAt(at("2024-03-15T13:30:00Z")), eventAt(at("2024-03-15T13:59:59Z"))]
    let servedStale = false
    return atNow(
      Effect.gen(function* () {
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* pump.start
        yield* advanceUntil("both events are handled", () => handled.length === 2)
        expect(servedStale).toBe(true)
        expect(handled).toEqual(events.map((event) => event.eventId))
        yield* pump.stop
      }).pipe(
        Effect.provide(
          wrappingPages(
            (fetchPage) => (request) =>
              Effect.map(fetchPage(request), (page) => {
                if (servedStale || request.timeBucket !== "20240315130000") return page
                servedStale = true
                return { events: page.events.slice(0, 1), requestedAt: at("2024-03-15T13:59:58Z") }
              }),
            testLayers({ events, state: { timeBucket: TimeBucket.make("20240315130000") } })
          )
        )
      )
    )
  })

  it.effect("a page names the bucket read after it once its hour and the settle window are over, not before", () => {
    // NOW is 14:20 and the settle window 30 minutes: 11:00 is over (12:00 holds nothing); 13:00 is over only at 14:30,
    // until then its end is the live edge; 14:00 is the live hour.
    const events = [
      eventAt(at("2024-03-15T11:10:00Z")),
      eventAt(at("2024-03-15T13:10:00Z")),
      eventAt(at("2024-03-15T14:10:00Z"))
    ]
    const { fetches, layer } = recordingFetches(
      testLayers({ events, state: { timeBucket: TimeBucket.make("20240315110000") } })
    )
    return atNow(
      Effect.gen(function* () {
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          rolloverSettleMs: 30 * MINUTE,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* pump.start
        yield* advanceUntil("the events are handled", () => handled.length === events.length, { stepMs: MINUTE })
        yield* pump.stop
        expect(handled).toEqual(events.map((event) => event.eventId))
        const named = (timeBucket: string, before: number, after = Number.NEGATIVE_INFINITY) =>
          new Set(
            fetches
              .filter((f) => f.request.timeBucket === timeBucket && f.at < before && f.at >= after)
              .map((f) => f.request.followingBucket)
          )
        const settled13 = at("2024-03-15T14:30:00Z")
        expect(named("20240315110000", Number.POSITIVE_INFINITY)).toEqual(new Set(["20240315130000"]))
        expect(named("20240315130000", settled13)).toEqual(new Set([undefined]))
        expect(named("20240315130000", Number.POSITIVE_INFINITY, settled13)).toEqual(new Set(["20240315140000"]))
        expect(named("20240315140000", Number.POSITIVE_INFINITY)).toEqual(new Set([undefined]))
      }).pipe(Effect.provide(layer))
    )
  })
})

describe("the fetch loop and pending I/O", () => {
  /** The scheduler turns that ran before each page request, with the source saying `responsePending`. */
  const turnsBeforeEachFetch = (responsePending: boolean) => {
    const events = Array.from({ length: 12 }, (_, i) => eventAt(NOW - 50 * MINUTE + i * 1000))
    const turnsAt: Array<number> = []
    let turns = 0
    return atNow(
      Effect.gen(function* () {
        // Runs only while every other fiber waits or yields.
        yield* Effect.forkChild(Effect.forever(Effect.sync(() => turns++)))
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          bufferSize: 100,
          maxPageSize: 2,
          processor: { handleEvent: (event) => Effect.sync(() => handled.push(event.eventId)) }
        })
        yield* pump.start
        yield* advanceUntil("every event is handled", () => handled.length === events.length)
        yield* pump.stop
        return turnsAt
      }).pipe(
        Effect.provide(
          wrappingPages(
            (fetchPage) => (request) =>
              Effect.suspend(() => {
                turnsAt.push(turns)
                return Effect.map(fetchPage(request), (page) => ({ ...page, responsePending }))
              }),
            testLayers({ events, state: { timeBucket: TimeBucket.make("20240315130000") } })
          )
        )
      )
    )
  }

  it.effect("after handing over a page whose source still awaits a response, it lets other work run first", () =>
    Effect.gen(function* () {
      const pending = yield* turnsBeforeEachFetch(true)
      // Six pages of two, then the empty page at the live edge: other work ran before every next request.
      const first = pending.slice(0, 7)
      expect(first.length).toBe(7)
      for (let i = 1; i < first.length; i++) expect(first[i]).toBeGreaterThan(first[i - 1] as number)
      // Without a pending response the pages are read back to back (room for all of them): no turn is given away.
      const none = yield* turnsBeforeEachFetch(false)
      expect(new Set(none.slice(0, 6)).size).toBe(1)
    })
  )
})
