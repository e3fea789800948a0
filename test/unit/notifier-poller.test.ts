import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { PollerNotifier } from "../../src/layers/notifier/Poller.ts"
import { Notifier } from "../../src/services/Notifier.ts"

const withPoller = <A, E>(intervalMs: number | undefined, body: Effect.Effect<A, E, Notifier>) =>
  Effect.provide(body, PollerNotifier.layer(intervalMs === undefined ? {} : { intervalMs }))

describe("PollerNotifier", () => {
  it.effect("a wait with a long timeout returns after intervalMs of virtual time", () =>
    withPoller(
      5_000,
      Effect.gen(function* () {
        const notifier = yield* Notifier
        const fiber = yield* notifier.wait("20 seconds").pipe(Effect.forkChild)
        yield* TestClock.adjust("4999 millis")
        expect(fiber.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust("1 millis")
        expect(yield* Fiber.join(fiber)).toBe("timeout")
      })
    )
  )

  it.effect("intervalMs is not capped at 1 s (the original pump polled every second whatever was configured)", () =>
    withPoller(
      3_000,
      Effect.gen(function* () {
        const notifier = yield* Notifier
        const fiber = yield* notifier.wait("20 seconds").pipe(Effect.forkChild)
        yield* TestClock.adjust("1 second")
        expect(fiber.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust("2 seconds")
        expect(yield* Fiber.join(fiber)).toBe("timeout")
      })
    )
  )

  it.effect("a timeout shorter than the interval wins", () =>
    withPoller(
      5_000,
      Effect.gen(function* () {
        const notifier = yield* Notifier
        const fiber = yield* notifier.wait("200 millis").pipe(Effect.forkChild)
        yield* TestClock.adjust("200 millis")
        expect(yield* Fiber.join(fiber)).toBe("timeout")
      })
    )
  )

  it.effect("defaults to 5 s", () =>
    withPoller(
      undefined,
      Effect.gen(function* () {
        const notifier = yield* Notifier
        const fiber = yield* notifier.wait("1 minute").pipe(Effect.forkChild)
        yield* TestClock.adjust("4 seconds")
        expect(fiber.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(fiber)).toBe("timeout")
        const status = yield* notifier.status
        expect(status.notifier).toBe("poller")
        expect(status.connected).toBe(true)
      })
    )
  )

  it.effect("a wait is interruptible", () =>
    withPoller(
      5_000,
      Effect.gen(function* () {
        const notifier = yield* Notifier
        const fiber = yield* notifier.wait("20 seconds").pipe(Effect.forkChild)
        yield* TestClock.adjust("1 second")
        yield* Fiber.interrupt(fiber)
        expect(Exit.hasInterrupts(yield* Fiber.await(fiber))).toBe(true)
      })
    )
  )

  it.effect("rejects 50 with an InvalidOptions naming notifier.intervalMs", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Layer.build(PollerNotifier.layer({ intervalMs: 50 })))
      expect(error._tag).toBe("InvalidOptions")
      expect(error.field).toBe("notifier.intervalMs")
      expect(error.received).toBe("50")
      expect(error.message).toContain("notifier.intervalMs")
      expect(error.message).toContain(">= 100")
    })
  )

  it.effect("rejects values that are not finite numbers", () =>
    Effect.gen(function* () {
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, -1, "5000" as unknown as number]) {
        const error = yield* Effect.flip(Layer.build(PollerNotifier.layer({ intervalMs: bad })))
        expect(error.field).toBe("notifier.intervalMs")
      }
      yield* Layer.build(PollerNotifier.layer({ intervalMs: 100 }))
    })
  )
})
