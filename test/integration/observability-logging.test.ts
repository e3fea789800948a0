/**
 * The README logger through the facade: levels, messages and structured metadata for a run with two fetch outages, a
 * refused WebSocket and a failing failed-handler. Lifecycle is at debug; each outage gives exactly one warning and one
 * recovery line however many retries it took; the retries themselves are at debug.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { type Emulator, start } from "../../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreEvent, TimeBucket } from "../../src/index.ts"
import {
  API_KEY,
  type CredentialProxy,
  captureLogger,
  emulatorOptions,
  HOUR,
  type LogLine,
  SOURCE,
  seed,
  startCredentialProxy,
  waitFor
} from "./observability-support.ts"

let emulator: Emulator
let proxy: CredentialProxy
beforeEach(async () => {
  emulator = await start(emulatorOptions)
  proxy = await startCredentialProxy(emulator)
})
afterEach(async () => {
  await proxy.close()
  await emulator.close()
})

const POISON = 1

describe("observability: logging through the README logger", () => {
  it("routes levels and metadata; one warning and one recovery per outage; lifecycle at debug", async () => {
    const ids = seed(emulator, 3, 2)
    const startBucket = TimeBucket.fromDate(Date.now() - 3 * HOUR)
    const { lines, logger } = captureLogger()
    const handled = new Set<number>()
    const pump = FlowcoreDataPump.create({
      auth: { apiKey: API_KEY },
      dataSource: SOURCE,
      baseUrlOverride: proxy.url,
      logger,
      maxRedeliveryCount: 0,
      stateManager: { getState: () => ({ timeBucket: startBucket }), setState: () => {} },
      processor: {
        handler: (events: Array<FlowcoreEvent>) => {
          for (const event of events) {
            if (event.payload.n === POISON) throw new Error("handler refused the event")
            handled.add(Number(event.payload.n))
          }
        },
        failedHandler: () => {
          throw new Error("the dead-letter store is down")
        }
      }
    })
    const find = (level: LogLine["level"], text: string) =>
      lines.filter((line) => line.level === level && line.message.includes(text))
    const ingestLive = (n: number) => emulator.ingest({ ...SOURCE, eventType: SOURCE.eventTypes[0], payload: { n } })

    await pump.start()
    try {
      await waitFor("the history is handled", () => handled.has(0) && handled.has(2))
      await waitFor("the failed handler's error is logged", () => find("error", "failed-events handler").length === 1)
      await waitFor("the WebSocket is connected", () => find("debug", "websocket notifier connected").length === 1)
      await waitFor("the pump is live", async () => (await pump.snapshot())?.live === true)

      for (const [outage, n] of [
        [1, 100],
        [2, 101]
      ] as const) {
        // 400 is not retried inside the HTTP source, so every failed attempt reaches the engine's supervision.
        const retriesBefore = find("debug", "Fetching events still failing").length
        emulator.setFaults({ errorRate: 1, errorStatus: 400 })
        ingestLive(n)
        await waitFor(
          `outage ${outage} has failed twice`,
          () => find("debug", "Fetching events still failing").length > retriesBefore
        )
        const during = await pump.snapshot()
        expect(during?.health.fetching.consecutiveFailures).toBeGreaterThanOrEqual(2)
        expect(during?.health.fetching.lastError).toContain("HTTP 400")
        emulator.setFaults({ errorRate: 0 })
        await waitFor(`outage ${outage} recovered`, () => find("info", "Fetching events recovered").length === outage)
        await waitFor(`event ${n} is handled`, () => handled.has(n))
        const after = await pump.snapshot()
        expect(after?.health.fetching.consecutiveFailures).toBe(0)
        expect(after?.counters.fetchRetries).toBeGreaterThanOrEqual(2 * outage)
      }

      proxy.webSocket = "wrong-credentials"
      emulator.dropWebSockets()
      await waitFor(
        "two reconnects are refused",
        () => find("debug", "websocket notifier still not connected").length >= 2
      )
      proxy.webSocket = "forward"
      await waitFor("the WebSocket reconnects", () => find("info", "websocket notifier connected again").length === 1)
    } finally {
      await pump.stop()
    }

    // One warning per outage, with the failure as metadata.
    const fetchWarnings = find("warn", "Fetching events failed; retrying")
    expect(fetchWarnings).toHaveLength(2)
    for (const warning of fetchWarnings) {
      expect(warning.metadata).toEqual({ error: expect.stringContaining("EventList") })
      expect(warning.metadata?.error).toContain("HTTP 400")
    }
    // The retries between are at debug, numbered.
    const retries = find("debug", "Fetching events still failing")
    expect(retries.length).toBeGreaterThanOrEqual(2)
    for (const retry of retries) {
      expect(retry.metadata).toEqual({ attempt: expect.any(Number), error: expect.stringContaining("HTTP 400") })
      expect(retry.metadata?.attempt).toBeGreaterThanOrEqual(2)
    }
    // One recovery per outage, counting the failed attempts.
    const recoveries = find("info", "Fetching events recovered")
    expect(recoveries).toHaveLength(2)
    for (const recovery of recoveries) expect(recovery.metadata?.failedAttempts).toBeGreaterThanOrEqual(2)

    // The notifier outage: one warning, each refused attempt at debug, one recovery line.
    expect(find("warn", "websocket notifier is not connected")).toHaveLength(1)
    for (const refused of find("debug", "websocket notifier still not connected")) {
      expect(refused.message).toContain("401")
      expect(refused.metadata).toEqual({ notifier: "websocket" })
    }
    expect(find("info", "websocket notifier connected again")).toEqual([
      { level: "info", message: expect.any(String), error: undefined, metadata: { notifier: "websocket" } }
    ])

    // A final failure is a warning naming the events; a throwing failed handler is an error with its cause.
    expect(find("warn", "Events finally failed after their redeliveries")).toEqual([
      {
        level: "warn",
        message: "Events finally failed after their redeliveries",
        error: undefined,
        metadata: { count: 1, eventIds: [ids[POISON]], reason: expect.stringContaining("handler refused the event") }
      }
    ])
    expect(find("error", "A failed-events handler failed")).toEqual([
      {
        level: "error",
        message: "A failed-events handler failed",
        error: undefined,
        metadata: { cause: expect.stringContaining("the dead-letter store is down") }
      }
    ])

    // Lifecycle at debug, with where the run started.
    expect(find("debug", "Pump started")).toEqual([
      {
        level: "debug",
        message: "Pump started",
        error: undefined,
        metadata: { from: startBucket }
      }
    ])
    expect(find("debug", "Pump generation started")[0]?.metadata).toMatchObject({ generation: 1 })
    expect(find("debug", "Pump stopped")).toHaveLength(1)
    expect(lines.at(-1)?.message).toBe("Pump stopped")

    // Nothing else is above debug: a healthy pump is quiet at info.
    const expectedAboveDebug = [
      "Fetching events failed; retrying",
      "Fetching events recovered",
      "websocket notifier is not connected",
      "websocket notifier connected again",
      "Events finally failed after their redeliveries",
      "A failed-events handler failed"
    ]
    const unexpected = lines.filter(
      (line) => line.level !== "debug" && !expectedAboveDebug.some((text) => line.message.includes(text))
    )
    expect(unexpected).toEqual([])
    for (const line of lines) expect(line.metadata).toBeTypeOf("object")
  })
})
