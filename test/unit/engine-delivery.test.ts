/**
 * Guarantees 1-3 of design.md §4: no loss (also across a crash), the watermark checkpoint, and bounded memory.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import type { PageRequest } from "../../src/services/DataSource.ts"
import {
  advanceUntil,
  assertCheckpointCovers,
  atNow,
  eventAt,
  eventsFrom,
  HOUR,
  idle,
  NOW,
  savedState,
  testLayers,
  wrappingPages
} from "./harness.ts"

const historyStart: PumpState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }

/** The test layers with a DataSource that reports every page request to `onRequest` before serving it. */
const observingPages = (
  onRequest: (request: PageRequest) => Effect.Effect<void>,
  layers: Parameters<typeof testLayers>[0]
) =>
  wrappingPages((fetchPage) => (request) => Effect.andThen(onRequest(request), fetchPage(request)), testLayers(layers))

/** A fixed permutation of 0..n-1 that is far from fetch order. */
const scrambled = (n: number): Array<number> => Array.from({ length: n }, (_, i) => (i * 7 + 3) % n)

describe("guarantee 1: no loss", () => {
  it.effect("out-of-order acks in pull mode never let the saved checkpoint pass an unacked event", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 20, 60_000)
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({ bufferSize: 20, checkpoint: { everyEvents: 1 } })
        yield* pump.start
        yield* idle
        const delivery = yield* pump.reserveDelivery(20)
        expect(delivery.events.map((event) => event.eventId)).toEqual(events.map((event) => event.eventId))

        const settled = new Set<string>()
        const history = MemoryStateStore.use((memory) => memory.history)
        for (const index of scrambled(20)) {
          const event = events[index] as FlowcoreEvent
          expect(yield* pump.acknowledge([event.eventId], delivery.deliveryId)).toBe(1)
          settled.add(event.eventId)
          yield* idle
          // Every save so far, not just the latest one, must be covered by what is settled now.
          for (const saved of yield* history) assertCheckpointCovers(saved, events, settled)
        }
        const last = events[19] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a crash at any instant, resumed from the saved checkpoint, delivers every event at least once", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 40, 30_000)
    // Handler durations vary per event, so with 4 in flight acknowledgements arrive out of fetch order.
    const durationOf = (event: FlowcoreEvent) => Duration.millis(100 + ((Number(event.payload.n) * 37) % 5) * 150)

    const runUntilCrash = (crashAfterMs: number) =>
      atNow(
        Effect.gen(function* () {
          const handled = new Set<string>()
          const pump = yield* DataPump.make({
            bufferSize: 8,
            drainTimeoutMs: 0,
            processor: {
              concurrency: 4,
              handleEvent: (event) =>
                Effect.sleep(durationOf(event)).pipe(Effect.andThen(Effect.sync(() => handled.add(event.eventId))))
            }
          })
          yield* pump.start
          yield* TestClock.adjust(crashAfterMs)
          // What a SIGKILL leaves behind: the store's content at this instant, and the side effects done so far.
          return { image: yield* savedState, handled: new Set(handled) }
        }).pipe(Effect.scoped, Effect.provide(testLayers({ events, state: historyStart })))
      )

    const resume = (image: PumpState | undefined, missing: ReadonlySet<string>) =>
      atNow(
        Effect.gen(function* () {
          const handled = new Set<string>()
          const pump = yield* DataPump.make({
            bufferSize: 8,
            drainTimeoutMs: 0,
            processor: { concurrency: 4, handleEvent: (event) => Effect.sync(() => handled.add(event.eventId)) }
          })
          yield* pump.start
          yield* advanceUntil("every event missing after the crash is delivered", () =>
            [...missing].every((id) => handled.has(id))
          )
          return handled
        }).pipe(Effect.scoped, Effect.provide(testLayers({ events, state: image ?? historyStart })))
      )

    return Effect.gen(function* () {
      for (const crashAfterMs of [0, 150, 420, 1000, 1730, 2600, 3999]) {
        const { image, handled } = yield* runUntilCrash(crashAfterMs)
        const missing = new Set(events.map((event) => event.eventId).filter((id) => !handled.has(id)))
        assertCheckpointCovers(image, events, handled)
        const redelivered = yield* resume(image, missing)
        for (const event of events) {
          expect(handled.has(event.eventId) || redelivered.has(event.eventId)).toBe(true)
        }
      }
    })
  })
})

describe("guarantee 2: watermark checkpoint", () => {
  // The id says 13:59:59, but x-flowcore-event-time moved the event into the 14:00 bucket (protocol §11 item 2).
  const moved = eventAt(Date.UTC(2024, 2, 15, 13, 59, 59), { timeBucket: "20240315140000" })
  const events = [
    eventAt(Date.UTC(2024, 2, 15, 13, 10)),
    eventAt(Date.UTC(2024, 2, 15, 13, 20)),
    moved,
    eventAt(Date.UTC(2024, 2, 15, 14, 5))
  ]
  const [e0, e1, , e3] = events as [FlowcoreEvent, FlowcoreEvent, FlowcoreEvent, FlowcoreEvent]
  const from13: PumpState = { timeBucket: TimeBucket.make("20240315130000") }

  it.effect("saves the last event of the longest settled prefix, with that event's own timeBucket", () =>
    atNow(
      Effect.gen(function* () {
        expect(TimeBucket.fromDate(TimeUuid.fromString(moved.eventId).getDate())).toBe("20240315130000")
        const pump = yield* DataPump.make({ bufferSize: 10 })
        yield* pump.start
        yield* idle
        const delivery = yield* pump.reserveDelivery(10)
        expect(delivery.events.map((event) => event.eventId)).toEqual(events.map((event) => event.eventId))

        yield* pump.acknowledge([e1.eventId], delivery.deliveryId)
        yield* idle
        expect(yield* savedState).toEqual(from13)
        yield* pump.acknowledge([e0.eventId], delivery.deliveryId)
        yield* idle
        expect(yield* savedState).toEqual({ timeBucket: e1.timeBucket, eventId: e1.eventId })
        yield* pump.acknowledge([moved.eventId], delivery.deliveryId)
        yield* idle
        expect(yield* savedState).toEqual({ timeBucket: "20240315140000", eventId: moved.eventId })
        yield* pump.stop
      }).pipe(Effect.provide(testLayers({ events, state: from13 })))
    )
  )

  it.effect("resuming from that checkpoint reads strictly after it, in the event's own bucket", () =>
    atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({ bufferSize: 10 })
        yield* pump.start
        yield* idle
        const delivery = yield* pump.reserveDelivery(10)
        expect(delivery.events.map((event) => event.eventId)).toEqual([e3.eventId])
        yield* pump.stop
      }).pipe(
        Effect.provide(
          testLayers({ events, state: { timeBucket: TimeBucket.make(moved.timeBucket), eventId: moved.eventId } })
        )
      )
    )
  )
})

describe("guarantee 3: bounded memory", () => {
  it.effect("with a slow handler the buffer never holds more than bufferSize and pages fit the free slots", () => {
    const bufferSize = 10
    const maxPageSize = 4
    const events = eventsFrom(NOW - 2 * HOUR, 120, 20_000)
    const pageChecks: Array<{ readonly request: PageRequest; readonly depth: number }> = []
    let depthNow: () => Effect.Effect<number> = () => Effect.succeed(0)
    return atNow(
      Effect.gen(function* () {
        const handled: Array<string> = []
        const pump = yield* DataPump.make({
          bufferSize,
          maxPageSize,
          processor: {
            concurrency: 3,
            handleEvent: (event) =>
              Effect.sleep("700 millis").pipe(Effect.andThen(Effect.sync(() => handled.push(event.eventId))))
          }
        })
        depthNow = () => Effect.map(pump.snapshot, (snapshot) => snapshot.buffer.depth)
        yield* pump.start
        let maxDepth = 0
        yield* advanceUntil(
          "every event is handled",
          () =>
            Effect.map(pump.snapshot, (snapshot) => {
              maxDepth = Math.max(maxDepth, snapshot.buffer.depth)
              expect(snapshot.buffer.depth).toBeLessThanOrEqual(bufferSize)
              expect(snapshot.buffer.open + snapshot.buffer.reserved).toBeLessThanOrEqual(bufferSize)
              return handled.length === events.length
            }),
          { stepMs: 50 }
        )
        expect(maxDepth).toBe(bufferSize)
        expect(new Set(handled).size).toBe(events.length)
        const historical = pageChecks.filter((check) => check.request.timeBucket < TimeBucket.fromDate(NOW))
        expect(historical.length).toBeGreaterThan(events.length / bufferSize)
        // A read-ahead (the page after this one, which a source may request early and keep undecoded) is a whole
        // page, never more than the buffer can take.
        for (const { request, depth } of pageChecks) {
          expect(request.pageSize).toBeGreaterThan(0)
          expect(request.pageSize).toBeLessThanOrEqual(bufferSize - depth)
          expect(request.readAhead).toBe(maxPageSize)
        }
        yield* pump.stop
      }).pipe(
        Effect.provide(
          // Records the buffer depth at the instant of every page request.
          observingPages((request) => Effect.map(depthNow(), (depth) => void pageChecks.push({ request, depth })), {
            events,
            state: historyStart
          })
        )
      )
    )
  })

  const sixtyEvents = eventsFrom(NOW - 2 * HOUR, 60, 20_000)

  /**
   * Runs `sixtyEvents` through a pump of this shape, with handlers and fetches taking the given (TestClock) time,
   * until all are handled (within `maxSteps` steps of 50 ms); returns the page requests made for them.
   */
  const requestedSizes = (options: {
    readonly bufferSize: number
    readonly maxPageSize: number
    readonly handlerMs: (index: number) => number
    readonly fetchMs: number
    readonly concurrency?: number
    readonly checkpoint?: { readonly everyEvents?: number; readonly intervalMs?: number }
    readonly maxSteps?: number
    readonly readsAhead?: boolean
  }) => {
    const events = sixtyEvents
    const requests: Array<PageRequest> = []
    return atNow(
      Effect.gen(function* () {
        let handled = 0
        const pump = yield* DataPump.make({
          bufferSize: options.bufferSize,
          maxPageSize: options.maxPageSize,
          ...(options.checkpoint === undefined ? {} : { checkpoint: options.checkpoint }),
          processor: {
            concurrency: options.concurrency ?? 2,
            handleEvent: (event) => {
              const ms = options.handlerMs(events.indexOf(event))
              const done = Effect.sync(() => handled++)
              return ms > 0 ? Effect.andThen(Effect.sleep(Duration.millis(ms)), done) : done
            }
          }
        })
        yield* pump.start
        yield* advanceUntil("every event is handled", () => Effect.succeed(handled === events.length), {
          stepMs: 50,
          ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps })
        })
        yield* pump.stop
        return requests.filter((request) => request.timeBucket < TimeBucket.fromDate(NOW))
      }).pipe(
        Effect.provide(
          wrappingPages(
            (fetchPage) => (request) =>
              Effect.sync(() => requests.push(request)).pipe(
                Effect.andThen(options.fetchMs > 0 ? Effect.sleep(Duration.millis(options.fetchMs)) : Effect.void),
                Effect.andThen(fetchPage(request)),
                // A source that reads ahead says so on every page that has a next one.
                Effect.map((page) =>
                  options.readsAhead === true && page.nextCursor !== undefined
                    ? { ...page, readAhead: request.readAhead }
                    : page
                )
              ),
            testLayers({ events, state: historyStart })
          )
        )
      )
    )
  }

  it.effect(
    "pages are never requested for a few free slots: half a page, or a whole one when the buffer holds two",
    () => {
      return Effect.gen(function* () {
        // Handling a page (3 s at 2 × 300 ms) takes longer than fetching one: half pages, so fetching overlaps.
        const halfPages = yield* requestedSizes({
          bufferSize: 10,
          maxPageSize: 10,
          handlerMs: () => 300,
          fetchMs: 100
        })
        expect(halfPages.length).toBeGreaterThan(6)
        for (const { pageSize } of halfPages) expect(pageSize).toBeGreaterThanOrEqual(5)
        expect(halfPages.some(({ pageSize }) => pageSize < 10)).toBe(true)
        const wholePages = yield* requestedSizes({
          bufferSize: 10,
          maxPageSize: 4,
          handlerMs: () => 300,
          fetchMs: 0
        })
        expect(wholePages.length).toBeGreaterThanOrEqual(15)
        for (const { pageSize } of wholePages) expect(pageSize).toBe(4)
      })
    }
  )

  it.effect("a page the source has read ahead is waited for whole, even where half pages would pay", () =>
    Effect.gen(function* () {
      // The shape that asks for half pages above, but the next page is already on its way for a whole page: a
      // smaller request could not use it.
      const requests = yield* requestedSizes({
        bufferSize: 10,
        maxPageSize: 10,
        handlerMs: () => 300,
        fetchMs: 100,
        readsAhead: true
      })
      expect(requests.length).toBeGreaterThan(5)
      for (const request of requests) {
        expect(request.pageSize).toBe(10)
        expect(request.readAhead).toBe(10)
      }
    })
  )

  it.effect(
    "a buffer smaller than two pages waits for room for a whole page when handling is faster than fetching",
    () =>
      Effect.gen(function* () {
        // Two half pages would cost two fetches of 500 ms where handling a whole page takes 100 ms.
        const requests = yield* requestedSizes({
          bufferSize: 10,
          maxPageSize: 10,
          concurrency: 1,
          handlerMs: () => 10,
          fetchMs: 500
        })
        expect(requests.length).toBeGreaterThanOrEqual(6)
        for (const { pageSize } of requests) expect(pageSize).toBe(10)
      })
  )

  it.effect(
    "waiting for a whole page never stalls on a checkpoint that waits for more events (checkpoint.everyEvents)",
    () =>
      Effect.gen(function* () {
        // The last event of every page takes a second, the others none: when the loop decides to wait for a whole
        // page, the only thing between it and that room is a save, which everyEvents alone would never make.
        const requests = yield* requestedSizes({
          bufferSize: 10,
          maxPageSize: 10,
          concurrency: 1,
          checkpoint: { everyEvents: 1000 },
          handlerMs: (index) => (index % 10 === 9 ? 1000 : 0),
          fetchMs: 5000
        })
        expect(requests.length).toBeGreaterThanOrEqual(6)
      })
  )

  it.effect("checkpoint.intervalMs never holds up fetching: a save the fetcher waits for is made at once", () =>
    Effect.gen(function* () {
      // Six seconds of handling and some of fetching (a second each: the checkpointer starts its interval while the
      // fetcher is away); waiting out the interval whenever the fetcher waits on a save would take minutes.
      const requests = yield* requestedSizes({
        bufferSize: 10,
        maxPageSize: 10,
        concurrency: 1,
        checkpoint: { intervalMs: 60_000 },
        handlerMs: () => 100,
        fetchMs: 1000,
        maxSteps: 400
      })
      expect(requests.length).toBeGreaterThanOrEqual(6)
    })
  )

  it.effect("checkpoint.intervalMs spaces saves out from the start: the first one too", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 30)
    return atNow(
      Effect.gen(function* () {
        let handled = 0
        const pump = yield* DataPump.make({
          bufferSize: 100,
          checkpoint: { intervalMs: 5000 },
          processor: {
            concurrency: 1,
            handleEvent: () =>
              Effect.andThen(
                Effect.sleep("1 second"),
                Effect.sync(() => handled++)
              )
          }
        })
        yield* pump.start
        // When each save was made (to the 100 ms step), while 30 handlers of a second each run one after another.
        const savedAt: Array<number> = []
        const memory = yield* MemoryStateStore
        yield* advanceUntil("every event is handled", () =>
          Effect.gen(function* () {
            const saves = yield* memory.saves
            const now = yield* Clock.currentTimeMillis
            while (savedAt.length < saves) savedAt.push(now - NOW)
            return handled === events.length
          })
        )
        yield* pump.stop
        // A save a settled event makes due waits out the interval, counted from the start, then from the last save.
        expect(savedAt.length).toBeGreaterThanOrEqual(4)
        expect(savedAt[0]).toBeGreaterThanOrEqual(5000)
        for (let i = 1; i < savedAt.length; i++) {
          expect((savedAt[i] as number) - (savedAt[i - 1] as number)).toBeGreaterThanOrEqual(5000)
        }
        const last = events[events.length - 1] as FlowcoreEvent
        expect(yield* savedState).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
      }).pipe(Effect.provide(testLayers({ events, state: historyStart })))
    )
  })

  it.effect("a page that finds the handlers idle is handled after the next page has been requested", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 16, 20_000)
    const log: Array<string> = []
    let requests = 0
    return atNow(
      Effect.gen(function* () {
        const pump = yield* DataPump.make({
          bufferSize: 20,
          maxPageSize: 4,
          processor: {
            concurrency: 4,
            handleEvent: (event) => Effect.sync(() => log.push(`handle ${events.indexOf(event)}`))
          }
        })
        yield* pump.start
        yield* advanceUntil("every event is handled", () =>
          Effect.succeed(log.filter((l) => l.startsWith("handle")).length === events.length)
        )
        yield* pump.stop
        // Idle handlers are woken after the fetch loop has asked for the next page, not inside the hand-over.
        for (let page = 0; page < 4; page++) {
          expect(log.indexOf(`request ${page + 2}`)).toBeLessThan(log.indexOf(`handle ${page * 4}`))
        }
      }).pipe(
        Effect.provide(
          observingPages(
            (request) =>
              request.timeBucket < TimeBucket.fromDate(NOW)
                ? Effect.andThen(
                    Effect.sync(() => log.push(`request ${++requests}`)),
                    Effect.sleep("1 second")
                  )
                : Effect.void,
            { events, state: historyStart }
          )
        )
      )
    )
  })

  it.effect("with room for another page, the next page is requested before the current one is handled", () => {
    const events = eventsFrom(NOW - 2 * HOUR, 12, 20_000)
    const log: Array<string> = []
    return atNow(
      Effect.gen(function* () {
        let done = 0
        const pump = yield* DataPump.make({
          bufferSize: 10,
          maxPageSize: 4,
          processor: {
            concurrency: 2,
            handleEvent: (event) =>
              Effect.sync(() => log.push(`handle ${events.indexOf(event)}`)).pipe(
                Effect.andThen(Effect.sleep("1 second")),
                Effect.andThen(Effect.sync(() => done++))
              )
          }
        })
        yield* pump.start
        yield* advanceUntil("every event is handled", () => Effect.succeed(done === events.length))
        yield* pump.stop
        // Fetching overlaps processing: page 2 (4 events, room for 6 more) is asked for as page 1 arrives, before
        // any of its events reaches a handler; page 3 would not fit beside them and waits for room.
        const handled = (index: number) => log.indexOf(`handle ${index}`)
        const requests = log.flatMap((line, at) => (line.startsWith("request") ? [at] : []))
        expect(requests.length).toBeGreaterThanOrEqual(3)
        expect(requests[1]).toBeLessThan(handled(0))
        expect(requests[2]).toBeGreaterThan(handled(2))
      }).pipe(
        Effect.provide(
          observingPages(
            (request) =>
              Effect.sync(() => {
                if (request.timeBucket < TimeBucket.fromDate(NOW)) log.push(`request ${request.pageSize}`)
              }),
            { events, state: historyStart }
          )
        )
      )
    )
  })
})
