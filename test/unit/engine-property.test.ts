/**
 * Property test of guarantees 1, 2 and 5 in pull mode: any sequence of reserve / acknowledge / fail / time advance
 * never lets a saved checkpoint pass an event that is not settled, and once everything is acknowledged every event
 * was delivered at least once and the checkpoint is the last event.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import type { Delivery } from "../../src/services/EventBuffer.ts"
import { assertCheckpointCovers, atNow, eventsFrom, HOUR, idle, NOW, savedState, testLayers } from "./harness.ts"

type Command =
  | { readonly _tag: "reserve"; readonly max: number }
  | { readonly _tag: "acknowledge"; readonly pick: number; readonly mask: number }
  | { readonly _tag: "fail"; readonly pick: number; readonly mask: number }
  | { readonly _tag: "advance"; readonly ms: number }

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("reserve" as const), max: fc.integer({ min: 1, max: 5 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("acknowledge" as const),
      pick: fc.nat(),
      mask: fc.integer({ min: 1, max: 31 })
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("fail" as const), pick: fc.nat(), mask: fc.integer({ min: 1, max: 31 }) })
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 1500 }) }) }
)

// Three hours of history in three buckets; the buffer holds a third of it, so the fetcher refills as events settle.
const events = eventsFrom(NOW - 3 * HOUR + 60_000, 24, 7 * 60_000)
const lastEvent = events[events.length - 1] as FlowcoreEvent

const scenario = (commands: ReadonlyArray<Command>) =>
  Effect.gen(function* () {
    const memory = yield* MemoryStateStore
    const pump = yield* DataPump.make({
      bufferSize: 8,
      maxRedeliveryCount: 1,
      achknowledgeTimeoutMs: 1000,
      redelivery: { baseDelayMs: 100, maxDelayMs: 400 }
    })
    const settled = new Set<string>()
    const delivered = new Set<string>()
    let finalFailures = 0
    // The listener takes a while: a finally failed event is settled only once it has returned.
    yield* pump.onFinalyFailed((failed) =>
      Effect.sleep("200 millis").pipe(
        Effect.andThen(
          Effect.sync(() => {
            finalFailures += failed.length
            for (const event of failed) settled.add(event.eventId)
          })
        )
      )
    )
    yield* pump.start
    yield* idle

    let outstanding: Array<Delivery> = []
    const reserve = (max: number) =>
      Effect.gen(function* () {
        // Only when something is open: a reserve on an empty buffer waits, which a single fiber cannot afford.
        if ((yield* pump.snapshot).buffer.open === 0) return undefined
        const delivery = yield* pump.reserveDelivery(max)
        for (const event of delivery.events) delivered.add(event.eventId)
        outstanding.push(delivery)
        return delivery
      })
    const acknowledge = (delivery: Delivery, ids: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        for (const id of ids) {
          if ((yield* pump.acknowledge([id], delivery.deliveryId)) === 1) settled.add(id)
        }
      })
    const check = Effect.gen(function* () {
      yield* idle
      for (const saved of yield* memory.history) assertCheckpointCovers(saved, events, settled)
    })

    for (const step of commands) {
      if (step._tag === "reserve") {
        yield* reserve(step.max)
      } else if (step._tag === "advance") {
        yield* TestClock.adjust(step.ms)
      } else if (outstanding.length > 0) {
        // Recent deliveries mostly, but old (expired, stale) ones too: those acknowledgements must be ignored.
        const recent = outstanding.slice(-6)
        const delivery = recent[step.pick % recent.length] as Delivery
        const ids = delivery.events.filter((_, i) => (step.mask >> i) & 1).map((event) => event.eventId)
        if (step._tag === "acknowledge") yield* acknowledge(delivery, ids)
        else yield* pump.fail(ids, delivery.deliveryId)
      }
      yield* check
    }

    // Drain: acknowledge whatever can be reserved, letting time pass for backoffs and expiries, until all settle.
    for (let round = 0; settled.size < events.length; round++) {
      if (round > 2000) return yield* Effect.die(new Error(`only ${settled.size} of ${events.length} settled`))
      outstanding = []
      const delivery = yield* reserve(10)
      if (delivery === undefined) yield* TestClock.adjust(250)
      else
        yield* acknowledge(
          delivery,
          delivery.events.map((event) => event.eventId)
        )
      yield* check
    }
    yield* TestClock.adjust(1000)
    yield* check

    expect(events.filter((event) => !delivered.has(event.eventId))).toEqual([])
    expect(yield* savedState).toEqual({ timeBucket: lastEvent.timeBucket, eventId: lastEvent.eventId })
    expect((yield* pump.snapshot).counters.failed).toBe(finalFailures)
    yield* pump.stop
  }).pipe(
    atNow,
    Effect.scoped,
    Effect.provide(
      Layer.mergeAll(
        testLayers({ events, state: { timeBucket: TimeBucket.fromDate(NOW - 4 * HOUR) } }),
        TestClock.layer(),
        Logger.layer([])
      )
    )
  )

describe("property: pull mode never checkpoints past an unsettled event", () => {
  it("random reserve / acknowledge / fail / time sequences keep the checkpoint behind every unsettled event", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 10, maxLength: 80 }), (commands) =>
        Effect.runPromise(scenario(commands))
      ),
      { numRuns: 60 }
    )
  })
})
