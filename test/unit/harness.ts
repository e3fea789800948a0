/** Shared wiring for deterministic engine tests: in-memory layers, a manual notifier and a fixed clock. */
import { Clock, Effect, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import { EventBufferLive } from "../../src/layers/buffer/EventBufferLive.ts"
import { InMemoryDataSource, type InMemoryEventInput } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import { DataSource, type PageRequest } from "../../src/services/DataSource.ts"
import { noopRecorder, PumpMetrics, type PumpMetricsRecorder } from "../../src/services/PumpMetrics.ts"

/** 2024-03-15T14:20:00Z: the tests' "now". */
export const NOW = Date.UTC(2024, 2, 15, 14, 20)
export const HOUR = 3_600_000

export const testLayers = (options: {
  readonly events?: ReadonlyArray<InMemoryEventInput | FlowcoreEvent>
  readonly eventTypes?: ReadonlyArray<string>
  readonly state?: PumpState
  readonly metrics?: Layer.Layer<PumpMetrics>
}) => {
  const metrics = options.metrics ?? PumpMetrics.none
  return Layer.mergeAll(
    InMemoryDataSource.layer({
      events: options.events ?? [],
      eventTypes: options.eventTypes ?? ["created", "updated"]
    }),
    ManualNotifier.layer,
    MemoryStateStore.layer(options.state),
    EventBufferLive.pipe(Layer.provide(metrics)),
    metrics
  )
}

/** Sets the TestClock to NOW before running the test body. */
export const atNow = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.andThen(TestClock.setTime(NOW), effect)

/** `count` events spread evenly over the hours before NOW, alternating two event types. */
export const history = (count: number, hours: number, startHoursAgo = hours): Array<InMemoryEventInput> =>
  Array.from({ length: count }, (_, i) => ({
    eventType: i % 2 === 0 ? "created" : "updated",
    payload: { n: i },
    at: NOW - startHoursAgo * HOUR + Math.floor((i * hours * HOUR) / count) + 1
  }))

/** A stored-form event at `at` (epoch ms); `timeBucket` may be overridden to model events moved by event time. */
export const eventAt = (
  at: number,
  options: {
    readonly eventType?: string
    readonly payload?: Record<string, unknown>
    readonly timeBucket?: string
  } = {}
): FlowcoreEvent => {
  const event = InMemoryDataSource.event(
    { eventType: options.eventType ?? "created", payload: options.payload ?? {}, at },
    at
  )
  return options.timeBucket === undefined ? event : { ...event, timeBucket: options.timeBucket }
}

/** `count` events `spacingMs` apart from `from`, payload `{ n }`, in fetch (time) order. */
export const eventsFrom = (from: number, count: number, spacingMs = 1000): Array<FlowcoreEvent> =>
  Array.from({ length: count }, (_, n) =>
    eventAt(from + n * spacingMs, { eventType: n % 2 === 0 ? "created" : "updated", payload: { n } })
  )

/** Lets every fiber that is ready run, without moving the clock. */
export const idle: Effect.Effect<void> = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** Advances the TestClock in `stepMs` steps until `condition` holds; fails the test after `maxSteps`. */
export const advanceUntil = (
  what: string,
  condition: () => boolean | Effect.Effect<boolean>,
  options: { readonly stepMs?: number; readonly maxSteps?: number } = {}
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const maxSteps = options.maxSteps ?? 10_000
    for (let step = 0; step <= maxSteps; step++) {
      yield* idle
      const result = condition()
      if (typeof result === "boolean" ? result : yield* result) return
      yield* TestClock.adjust(options.stepMs ?? 100)
    }
    return yield* Effect.die(new Error(`timed out waiting until ${what}`))
  })

/** The checkpoint the MemoryStateStore holds right now (what a crash would leave behind). */
export const savedState: Effect.Effect<PumpState | undefined, never, MemoryStateStore> = MemoryStateStore.use(
  (memory) => Effect.map(memory.get, Option.getOrUndefined)
)

/**
 * Fails the test if `saved` names an event while an event before it (in `fetchOrder`) is not in `settled`: the
 * checkpoint passed an unsettled event.
 */
export const assertCheckpointCovers = (
  saved: PumpState | undefined,
  fetchOrder: ReadonlyArray<FlowcoreEvent>,
  settled: ReadonlySet<string>
): void => {
  if (saved?.eventId === undefined) return
  const index = fetchOrder.findIndex((event) => event.eventId === saved.eventId)
  if (index < 0) return
  for (const event of fetchOrder.slice(0, index + 1)) {
    if (!settled.has(event.eventId)) {
      throw new Error(
        `checkpoint ${saved.eventId} (#${index}) passed the unsettled event #${fetchOrder.indexOf(event)} ${event.eventId}`
      )
    }
  }
}

export interface SleepCounter {
  /** Sleeps (timers) started on the clock and neither finished nor interrupted. */
  readonly pending: () => number
}

/**
 * Runs `f` with a Clock that delegates to the TestClock but counts the sleeps in progress, so a test can prove that
 * nothing (no fiber, no timer) is left waiting.
 */
export const withSleepCounter = <A, E, R>(f: (counter: SleepCounter) => Effect.Effect<A, E, R>) =>
  TestClock.testClockWith((testClock) => {
    let pending = 0
    const counting: TestClock.TestClock = {
      ...testClock,
      sleep: (duration) =>
        Effect.suspend(() => {
          pending++
          return Effect.ensuring(
            testClock.sleep(duration),
            Effect.sync(() => {
              pending--
            })
          )
        })
    }
    return Effect.provideService(f({ pending: () => pending }), Clock.Clock, counting)
  })

/** A metrics recorder counting final failures, acknowledgements and redeliveries, to compare with the snapshot. */
export const countingMetrics = () => {
  const counts = { failed: 0, acknowledged: 0, redelivered: 0 }
  const recorder: PumpMetricsRecorder = {
    ...noopRecorder,
    failed: (_type, count) => {
      counts.failed += count
    },
    acknowledged: (_type, count) => {
      counts.acknowledged += count
    },
    redelivered: (_type, count) => {
      counts.redelivered += count
    }
  }
  return { counts, layer: Layer.succeed(PumpMetrics, recorder) }
}

type FetchPage = DataSource["Service"]["fetchPage"]

/** `base` with its DataSource's `fetchPage` wrapped by `wrap`. */
export const wrappingPages = <ROut, E>(wrap: (fetchPage: FetchPage) => FetchPage, base: Layer.Layer<ROut, E>) =>
  Layer.provideMerge(
    Layer.effect(
      DataSource,
      DataSource.use((inner) => Effect.succeed(DataSource.of({ ...inner, fetchPage: wrap(inner.fetchPage) })))
    ),
    base
  )

/** Wraps the DataSource of `base` so every page request is recorded with the instant it was made. */
export const recordingFetches = <ROut, E>(base: Layer.Layer<ROut, E>) => {
  const fetches: Array<{ readonly at: number; readonly request: PageRequest }> = []
  const layer = wrappingPages(
    (fetchPage) => (request) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        fetches.push({ at, request })
        return fetchPage(request)
      }),
    base
  )
  return { fetches, layer }
}
