/**
 * EventBufferLive's wake-ups between the stages: when the checkpointer is woken decides how many scheduler turns a
 * page costs, and the coalescing of saves must survive it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import { makeBuffer } from "../../src/layers/buffer/EventBufferLive.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import { makeCheckpointer } from "../../src/pump/Checkpointer.ts"
import { resolveOptions } from "../../src/pump/PumpOptions.ts"
import { makeStatus } from "../../src/pump/PumpStatus.ts"
import type { Buffer } from "../../src/services/EventBuffer.ts"
import { noopRecorder } from "../../src/services/PumpMetrics.ts"
import { StateStore } from "../../src/services/StateStore.ts"
import { NOW } from "./harness.ts"

const events = (count: number) =>
  Array.from({ length: count }, (_, i) =>
    InMemoryDataSource.event({ eventType: "created", payload: { i }, at: NOW + i })
  )

const bufferOf = (capacity: number) =>
  makeBuffer(
    {
      capacity,
      maxRedeliveryCount: -1,
      redeliverySchedule: Schedule.spaced("1 second"),
      onFinalFailure: () => Effect.void,
      initialWatermark: undefined
    },
    noopRecorder
  )

/** Hands out and acknowledges everything open, in one go. */
const settleAll = (buffer: Buffer) => {
  const delivery = buffer.tryReserve(Number.MAX_SAFE_INTEGER)
  buffer.acknowledge(
    delivery.events.map((event) => event.eventId),
    delivery.deliveryId
  )
}

/** Stands in for the checkpointer: waits for the watermark to move past version 0, and keeps the version it saw. */
const watchWatermark = (buffer: Buffer) =>
  Effect.gen(function* () {
    const seen: { version?: number } = {}
    const fiber = yield* Effect.forkChild(
      Effect.map(buffer.awaitWatermark(0), (version) => {
        seen.version = version
      })
    )
    yield* Effect.yieldNow
    return { seen, fiber }
  })

describe("EventBufferLive wake-ups", () => {
  it.effect("the last settle while the fetcher waits for room wakes the checkpointer before acknowledge returns", () =>
    Effect.gen(function* () {
      const buffer = yield* bufferOf(3)
      yield* buffer.offer(events(3), undefined)
      const fetcher = yield* Effect.forkChild(buffer.awaitSpace(3))
      const checkpointer = yield* watchWatermark(buffer)
      const delivery = buffer.tryReserve(3)
      const [first, ...rest] = delivery.events.map((event) => event.eventId)

      // Not everything is settled: the checkpointer waits for the next turn, to cover all of this turn's acks.
      buffer.acknowledge([first as string], delivery.deliveryId)
      expect(checkpointer.seen.version).toBeUndefined()
      // The last one: the save that frees the fetcher's room is due now.
      buffer.acknowledge(rest, delivery.deliveryId)
      expect(checkpointer.seen.version).toBe(2)
      yield* Fiber.join(checkpointer.fiber)

      buffer.confirmSaved(2)
      yield* Fiber.join(fetcher)
      expect(buffer.freeSlots()).toBe(3)
    }).pipe(Effect.scoped)
  )

  it.effect("without a fetcher waiting, even the last settle leaves the save to the next turn", () =>
    Effect.gen(function* () {
      const buffer = yield* bufferOf(3)
      yield* buffer.offer(events(2), undefined)
      const checkpointer = yield* watchWatermark(buffer)
      settleAll(buffer)
      expect(checkpointer.seen.version).toBeUndefined()
      yield* Fiber.join(checkpointer.fiber)
      expect(checkpointer.seen.version).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.effect("the checkpointer is back waiting right after a save: page after page costs no scheduler turn", () =>
    Effect.gen(function* () {
      const buffer = yield* bufferOf(2)
      const store = yield* StateStore
      const memory = yield* MemoryStateStore
      const options = yield* resolveOptions({ bufferSize: 2, processor: { handler: () => Effect.void } })
      const checkpointer = makeCheckpointer({ buffer, store, metrics: noopRecorder, status: makeStatus(), options })
      yield* Effect.forkChild(checkpointer.loop)
      yield* Effect.yieldNow
      // Three pages in one synchronous stretch: each last settle saves at once, which lets the next page in.
      for (let page = 0; page < 3; page++) {
        yield* buffer.offer(events(2).slice(), undefined)
        yield* Effect.forkChild(buffer.awaitSpace(2), { startImmediately: true })
        settleAll(buffer)
      }
      expect(yield* memory.saves).toBe(3)
      expect(buffer.freeSlots()).toBe(2)
    }).pipe(Effect.scoped, Effect.provide(MemoryStateStore.layer()))
  )
})

describe("EventBufferLive space waiters", () => {
  it.effect("a fetcher interrupted while it waits for room no longer counts as waiting for a save", () =>
    Effect.gen(function* () {
      const buffer = yield* bufferOf(2)
      yield* buffer.offer(events(2), undefined)
      settleAll(buffer)
      // Both settled, not yet saved: the buffer is still full, and a fetcher waits for room for two.
      const fetcher = yield* Effect.forkChild(buffer.awaitSpace(2))
      yield* Effect.yieldNow
      expect(buffer.fetcherWaitsForSave()).toBe(true)
      yield* Fiber.interrupt(fetcher)
      expect(buffer.fetcherWaitsForSave()).toBe(false)
    })
  )
})
