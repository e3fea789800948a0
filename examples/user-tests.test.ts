/**
 * How to test your own handler: run the real pump engine on in-memory layers and virtual time, then assert what your
 * handler built. `InMemoryDataSource` holds the events (append more while the pump runs), `ManualNotifier` plays the
 * live notification, `MemoryStateStore` shows the checkpoint the pump saved, and the TestClock that `it.effect` runs
 * on makes retries, backoff and live waits instant and deterministic.
 *
 * In your project, import from "@flowcore/data-pump" instead of "../src/index.ts".
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import {
  DataPump,
  EventBufferLive,
  type FlowcoreEvent,
  InMemoryDataSource,
  type InMemoryEventInput,
  ManualNotifier,
  MemoryStateStore,
  PumpMetrics,
  TimeBucket
} from "../src/index.ts"

// ---- the code under test: a read model of order totals, fed by a batch handler ----

interface Order {
  readonly amount: number
  readonly paid: boolean
}

const makeOrderProjection = (options: { readonly failFirstDeliveryOf?: string } = {}) => {
  const orders = new Map<string, Order>()
  const deliveries = new Map<string, number>()
  const handler = (events: ReadonlyArray<FlowcoreEvent>) =>
    Effect.gen(function* () {
      for (const event of events) {
        const orderId = String(event.payload.orderId)
        const attempt = (deliveries.get(event.eventId) ?? 0) + 1
        deliveries.set(event.eventId, attempt)
        if (orderId === options.failFirstDeliveryOf && attempt === 1) {
          return yield* Effect.fail(new Error(`the database is briefly down while writing ${orderId}`))
        }
        if (event.eventType === "order.created") {
          orders.set(orderId, { amount: Number(event.payload.amount), paid: false })
        } else if (event.eventType === "order.paid") {
          const order = orders.get(orderId)
          if (order !== undefined) orders.set(orderId, { ...order, paid: true })
        }
      }
    })
  const unpaidTotal = () => [...orders.values()].filter((o) => !o.paid).reduce((sum, o) => sum + o.amount, 0)
  return { orders, deliveries, handler, unpaidTotal }
}

// ---- the test wiring ----

const NOW = Date.UTC(2024, 2, 15, 14, 20)
const MINUTE = 60_000

const created = (orderId: string, amount: number, at: number): InMemoryEventInput => ({
  eventType: "order.created",
  payload: { orderId, amount },
  at
})
/** Without `at`, the event is stamped with the (virtual) clock's now when it is appended. */
const paid = (orderId: string, at?: number): InMemoryEventInput => ({
  eventType: "order.paid",
  payload: { orderId },
  ...(at === undefined ? {} : { at })
})

const history = [
  created("a", 10, NOW - 90 * MINUTE),
  created("b", 25, NOW - 80 * MINUTE),
  paid("a", NOW - 70 * MINUTE),
  created("c", 5, NOW - 30 * MINUTE)
]

/** Everything the pump needs, in memory, starting from the bucket two hours before NOW. */
const testLayers = (events: ReadonlyArray<InMemoryEventInput>) =>
  Layer.mergeAll(
    InMemoryDataSource.layer({ eventTypes: ["order.created", "order.paid"], events }),
    ManualNotifier.layer,
    MemoryStateStore.layer({ timeBucket: TimeBucket.fromDate(NOW - 120 * MINUTE) }),
    EventBufferLive.pipe(Layer.provide(PumpMetrics.none)),
    PumpMetrics.none
  )

/**
 * Moves virtual time forward in 100 ms steps until `condition` holds, letting the pump's fibers run in between; dies
 * if it still does not hold after `withinMs` of virtual time.
 */
const eventually = (what: string, condition: () => boolean, withinMs = 60_000) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed <= withinMs; elapsed += 100) {
      if (condition()) return
      yield* TestClock.adjust("100 millis")
    }
    return yield* Effect.die(new Error(`${what}: still not true after ${withinMs} ms of virtual time`))
  })

describe("testing your handler with in-memory layers", () => {
  it.effect("projects the history and saves the last event as the checkpoint", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const projection = makeOrderProjection()
      // stopAt in the past: the pump handles everything up to it, then returns.
      const run = yield* DataPump.run({
        stopAt: new Date(NOW - 10 * MINUTE),
        processor: { concurrency: 2, handler: projection.handler }
      }).pipe(Effect.forkChild)
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(run)

      expect(Object.fromEntries(projection.orders)).toEqual({
        a: { amount: 10, paid: true },
        b: { amount: 25, paid: false },
        c: { amount: 5, paid: false }
      })
      expect(projection.unpaidTotal()).toBe(30)
      const events = yield* InMemoryDataSource.use((source) => source.events)
      const last = events[events.length - 1] as FlowcoreEvent
      const saved = yield* MemoryStateStore.use((memory) => memory.get)
      expect(Option.getOrUndefined(saved)).toEqual({ timeBucket: last.timeBucket, eventId: last.eventId })
    }).pipe(Effect.provide(testLayers(history)))
  )

  it.effect("picks up a live event as soon as the notifier fires", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const projection = makeOrderProjection()
      const pump = yield* DataPump.make({ processor: { handler: projection.handler } })
      yield* pump.start
      yield* eventually("the history is projected", () => projection.orders.size === 3)

      const [livePayment] = yield* InMemoryDataSource.use((source) => source.append([paid("b")]))
      yield* ManualNotifier.use((notifier) => notifier.notify)
      // Well within the 20 s live wait timeout, so this passes only because the notifier woke the pump.
      yield* eventually("order b is paid", () => projection.orders.get("b")?.paid === true, 2_000)

      expect(projection.unpaidTotal()).toBe(5)
      // stop() saves the final checkpoint: a restarted pump would continue after the live event.
      yield* pump.stop
      const saved = yield* MemoryStateStore.use((memory) => memory.get)
      expect(Option.getOrUndefined(saved)?.eventId).toBe(livePayment?.eventId)
    }).pipe(Effect.provide(testLayers(history)))
  )

  it.effect("a batch that fails once is redelivered and counted once", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(NOW)
      const projection = makeOrderProjection({ failFirstDeliveryOf: "b" })
      const run = yield* DataPump.run({
        stopAt: new Date(NOW - 10 * MINUTE),
        processor: { handler: projection.handler }
      }).pipe(Effect.forkChild)
      // The redelivery backoff runs on the TestClock too: a minute of virtual time covers it.
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(run)

      const [createdB] = (yield* InMemoryDataSource.use((source) => source.events)).filter(
        (event) => event.payload.orderId === "b"
      )
      expect(projection.deliveries.get((createdB as FlowcoreEvent).eventId)).toBe(2)
      expect(projection.orders.size).toBe(3)
      expect(projection.unpaidTotal()).toBe(30)
    }).pipe(Effect.provide(testLayers(history)))
  )
})
