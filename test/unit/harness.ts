/** Shared wiring for deterministic engine tests: in-memory layers, a manual notifier and a fixed clock. */
import { Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import { EventBufferLive } from "../../src/layers/buffer/EventBufferLive.ts"
import { InMemoryDataSource, type InMemoryEventInput } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import { PumpMetrics } from "../../src/services/PumpMetrics.ts"

/** 2024-03-15T14:20:00Z: the tests' "now". */
export const NOW = Date.UTC(2024, 2, 15, 14, 20)
export const HOUR = 3_600_000

export const testLayers = (options: {
  readonly events?: ReadonlyArray<InMemoryEventInput | FlowcoreEvent>
  readonly eventTypes?: ReadonlyArray<string>
  readonly state?: PumpState
}) =>
  Layer.mergeAll(
    InMemoryDataSource.layer({
      events: options.events ?? [],
      eventTypes: options.eventTypes ?? ["created", "updated"]
    }),
    ManualNotifier.layer,
    MemoryStateStore.layer(options.state),
    EventBufferLive.pipe(Layer.provide(PumpMetrics.none)),
    PumpMetrics.none
  )

/** Sets the TestClock to NOW before running the test body. */
export const atNow = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.andThen(TestClock.setTime(NOW), effect)

/** `count` events spread evenly over the hours before NOW, alternating two event types. */
export const history = (count: number, hours: number, startHoursAgo = hours): Array<InMemoryEventInput> =>
  Array.from({ length: count }, (_, i) => ({
    eventType: i % 2 === 0 ? "created" : "updated",
    payload: { n: i },
    at: NOW - startHoursAgo * HOUR + Math.floor((i * hours * HOUR) / count) + 1
  }))
