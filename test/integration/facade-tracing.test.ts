/**
 * The facade's `openTelemetry` option: with it, a Promise-API pump's spans go to the global OpenTelemetry tracer
 * provider; without it, none do.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { trace } from "@opentelemetry/api"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { type Emulator, start } from "../../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreEvent, TimeBucket } from "../../src/index.ts"
import { API_KEY, emulatorOptions, HOUR, SOURCE, seed, waitFor } from "./observability-support.ts"

let emulator: Emulator
const exporter = new InMemorySpanExporter()
beforeEach(async () => {
  emulator = await start(emulatorOptions)
  exporter.reset()
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
})
afterEach(async () => {
  trace.disable()
  await emulator.close()
})

/** Runs a facade pump over four seeded events until they are handled, then stops it; returns the span names. */
const spansOfRun = async (openTelemetry: boolean | undefined) => {
  seed(emulator, 4, 2)
  const handled: Array<FlowcoreEvent> = []
  const pump = FlowcoreDataPump.create({
    auth: { apiKey: API_KEY },
    dataSource: SOURCE,
    baseUrlOverride: emulator.url,
    notifier: { type: "poller", intervalMs: 1000 },
    ...(openTelemetry === undefined ? {} : { openTelemetry }),
    stateManager: { getState: () => ({ timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR) }), setState: () => {} },
    processor: { concurrency: 2, handler: (events) => void handled.push(...events) }
  })
  await pump.start()
  try {
    await waitFor("the events are handled", () => handled.length === 4)
  } finally {
    await pump.stop()
  }
  return new Set(exporter.getFinishedSpans().map((span) => span.name))
}

describe("facade: openTelemetry", () => {
  it("sends fetch, HTTP, handler and checkpoint spans to the global tracer provider", async () => {
    const names = await spansOfRun(true)
    for (const name of ["DataPump.fetchPage", "FlowcoreHttp.fetchPage", "GET", "DataPump.handleBatch"]) {
      expect(names, name).toContain(name)
    }
    expect(names).toContain("DataPump.saveCheckpoint")
  })

  it("makes no spans by default", async () => {
    expect((await spansOfRun(undefined)).size).toBe(0)
  })

  it("rejects a value that is not a boolean, naming the option", () => {
    expect(() =>
      FlowcoreDataPump.create({
        auth: { apiKey: API_KEY },
        dataSource: SOURCE,
        stateManager: { getState: () => null, setState: () => {} },
        openTelemetry: "yes" as unknown as boolean
      })
    ).toThrow(/openTelemetry/)
  })
})
