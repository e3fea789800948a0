/**
 * The engine over real HTTP: 50,000 events in 5 buckets read through FlowcoreHttp from the emulator, every event
 * exactly once and in order; with a buffer of 100, the same from pages of 1,000 handed out in parts; then the same
 * with 20% of requests failing with 500, one malformed page and 200 ms of latency, with either buffer — everything
 * still arrives, nothing crashes, and the retries are counted.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Emulator, start } from "../../src/emulator/index.ts"
import {
  DataPump,
  dataPumpPromRegistry,
  type FlowcoreEvent,
  flowcoreLayer,
  MemoryStateStore,
  TimeBucket
} from "../../src/index.ts"

const HOUR = 3_600_000
const EVENTS = 50_000
const source = { tenant: "e2e", dataCore: "e2e-dc", flowType: "e2e.0", eventTypes: ["e2e.a.0", "e2e.b.0"] }

let emulator: Emulator
let ids: ReadonlyArray<string>
let first: number

beforeAll(async () => {
  emulator = await start()
  first = Date.now() - 7 * HOUR
  ids = emulator.ingestMany(
    Array.from({ length: EVENTS }, (_, i) => ({
      ...source,
      eventType: source.eventTypes[i % 2] as string,
      payload: { n: i },
      eventTime: new Date(first + Math.floor((i * 5 * HOUR) / EVENTS))
    }))
  )
})
afterAll(async () => {
  await emulator.close()
})

const readAll = (bufferSize = 1000) =>
  Effect.gen(function* () {
    const seen: Array<string> = []
    /** The most events the buffer held, as every handler call sees it (its own batch included). */
    let deepest = 0
    let depth: Effect.Effect<number> = Effect.succeed(0)
    const controller = yield* DataPump.make({
      bufferSize,
      stopAt: new Date(first + 5 * HOUR + 1),
      rolloverSettleMs: 0,
      supervision: { baseDelayMs: 20, maxDelayMs: 200 },
      processor: {
        concurrency: 100,
        handler: (events: ReadonlyArray<FlowcoreEvent>) =>
          Effect.map(depth, (held) => {
            deepest = Math.max(deepest, held)
            for (const event of events) seen.push(event.eventId)
          })
      }
    })
    depth = Effect.map(controller.snapshot, (snapshot) => snapshot.buffer.depth)
    yield* controller.start
    yield* controller.awaitStopped
    return { seen, deepest, snapshot: yield* controller.snapshot }
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.mergeAll(
        flowcoreLayer({
          auth: { apiKey: "fc_emulator_secret" },
          dataSource: source,
          baseUrlOverride: emulator.url,
          notifier: { type: "poller", intervalMs: 200 }
        }),
        MemoryStateStore.layer({ timeBucket: TimeBucket.fromDate(first) })
      )
    )
  )

describe("end to end over HTTP", () => {
  it.live("reads 50,000 events across 5 buckets, each exactly once and in order", () =>
    Effect.gen(function* () {
      const { seen } = yield* readAll()
      expect(seen.length).toBe(EVENTS)
      expect(new Set(seen).size).toBe(EVENTS)
      expect(seen).toEqual(ids)
    })
  )

  it.live(
    "a buffer of 100 reads pages of 1,000 and hands them out in parts: the same events, a tenth of the requests",
    () =>
      Effect.gen(function* () {
        const before = emulator.stats.requests
        const { seen, deepest } = yield* readAll(100)
        expect(seen).toEqual(ids)
        expect(deepest).toBeGreaterThan(0)
        expect(deepest).toBeLessThanOrEqual(100)
        // 50 pages of 1,000 (and a few lookups and empty pages), where pages of 100 would take 500 requests.
        expect(emulator.stats.requests - before).toBeLessThan(100)
      })
  )

  /** EventList calls this process's metrics counted for the flow type, retries included (a counter: read a delta). */
  const eventListCalls = Effect.promise(() => dataPumpPromRegistry.metrics()).pipe(
    Effect.map((scrape) =>
      scrape
        .split("\n")
        .filter(
          (line) => line.startsWith("flowcore_data_pump_sdk_commands_counter{") && line.includes('flow_type="e2e.0"')
        )
        .filter((line) => line.includes('command="EventList"'))
        .map((line) => Number(line.split(" ").pop()))
        .reduce((a, b) => a + b, 0)
    )
  )

  for (const bufferSize of [1000, 100]) {
    it.live(
      `still delivers everything with 20% 500s, a malformed page and 200 ms of latency (bufferSize ${bufferSize})`,
      () =>
        Effect.gen(function* () {
          emulator.setFaults({ errorRate: 0.2, errorStatus: 500, latencyMs: 200, malformedResponses: 1 })
          const before = emulator.stats.requests
          const callsBefore = yield* eventListCalls
          const { seen, snapshot } = yield* readAll(bufferSize).pipe(
            Effect.ensuring(
              Effect.sync(() => emulator.setFaults({ errorRate: 0, latencyMs: 0, malformedResponses: 0 }))
            )
          )
          expect(new Set(seen).size).toBe(EVENTS)
          expect(seen).toEqual(ids)
          // The malformed response is retried by the engine; the 500s by the HTTP layer, which counts every attempt.
          expect(snapshot.counters.fetchRetries).toBeGreaterThanOrEqual(1)
          const pages = Math.ceil(EVENTS / 1000)
          expect(emulator.stats.requests - before).toBeGreaterThan(pages)
          expect((yield* eventListCalls) - callsBefore).toBeGreaterThan(pages)
        })
    )
  }
})
