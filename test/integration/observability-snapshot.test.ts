/**
 * `pump.snapshot()` through the facade after a known run against the emulator: five events, one that always fails
 * (one redelivery, then final failure), and one whose handler is held so the buffer can be looked at mid-run.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { type Emulator, start } from "../../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreEvent, TimeBucket } from "../../src/index.ts"
import { API_KEY, emulatorOptions, HOUR, SOURCE, seed, waitFor } from "./observability-support.ts"

let emulator: Emulator
beforeEach(async () => {
  emulator = await start(emulatorOptions)
})
afterEach(async () => {
  await emulator.close()
})

const POISON = 1
const HELD = 3

describe("observability: the facade's snapshot", () => {
  it("reports position, live, buffer, counters, lag, uptime and per-stage health", async () => {
    const ids = seed(emulator, 5, 2)
    const historyBucket = TimeBucket.fromDate(Date.now() - 2 * HOUR)
    const settled = new Set<number>()
    let heldEntered = false
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let saved: unknown
    const pump = FlowcoreDataPump.create({
      auth: { apiKey: API_KEY },
      dataSource: SOURCE,
      baseUrlOverride: emulator.url,
      notifier: { type: "poller", intervalMs: 100 },
      maxRedeliveryCount: 1,
      stateManager: {
        getState: () => ({ timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR) }),
        setState: (state) => {
          saved = state
        }
      },
      processor: {
        handler: async (events: Array<FlowcoreEvent>) => {
          for (const event of events) {
            const n = Number(event.payload.n)
            if (n === POISON) throw new Error("always fails")
            if (n === HELD) {
              heldEntered = true
              await held
            }
            settled.add(n)
          }
        }
      }
    })

    expect(await pump.snapshot()).toBeUndefined()
    const startedAt = Date.now()
    await pump.start()
    try {
      // Mid-run: event 3 is in its handler and event 1 failed, so everything after the checkpoint (event 0) is held:
      // 1 (open again, or waiting for its redelivery delay), 2 (acknowledged), 3 (reserved) and 4 (open). The handlers
      // can get there before the checkpointer's first save (event 0 then still counts as held), so wait for it too.
      await waitFor(
        "the held event is in its handler and event 0 is saved",
        async () => heldEntered && ((await pump.snapshot())?.counters.checkpointSaves ?? 0) >= 1
      )
      const during = await pump.snapshot()
      expect(during?.running).toBe(true)
      expect(during?.buffer).toMatchObject({ depth: 4, reserved: 1, capacity: 1000 })
      expect([1, 2]).toContain(during?.buffer.open)
      expect(during?.buffer.sizeBytes).toBeGreaterThan(0)
      expect(during?.checkpoint).toEqual({ timeBucket: historyBucket, eventId: ids[0] })
      expect(during?.counters).toMatchObject({ acknowledged: 2, failed: 0, pulled: 5 })
      release()

      // Settled events count against the buffer until the save that covers them is confirmed: wait for that too.
      await waitFor("every event settled and saved", async () => {
        const snapshot = await pump.snapshot()
        return (
          snapshot?.counters.acknowledged === 4 &&
          snapshot.counters.failed === 1 &&
          snapshot.live &&
          snapshot.buffer.depth === 0
        )
      })
      await waitFor(
        "a live wait has completed",
        async () => (await pump.snapshot())?.health.notifier.lastProgressAt !== undefined
      )
      const after = await pump.snapshot()
      const now = Date.now()
      expect(after).toBeDefined()
      if (after === undefined) return
      expect(after.running).toBe(true)
      expect(after.live).toBe(true)
      expect(after.generation).toBe(1)
      // The fetcher sits at the live edge, after the last event it read.
      const liveEdge = [TimeBucket.fromDate(now), TimeBucket.fromDate(now - 10_000)]
      expect(liveEdge).toContain(after.position.timeBucket)
      expect(after.position.eventId).toBe(ids[4])
      expect(after.checkpoint).toEqual({ timeBucket: historyBucket, eventId: ids[4] })
      expect(after.buffer).toEqual({ depth: 0, open: 0, reserved: 0, sizeBytes: 0, capacity: 1000 })
      expect(after.counters).toEqual({
        acknowledged: 4,
        failed: 1,
        pulled: 5,
        redelivered: 1,
        fetchRetries: 0,
        checkpointSaves: expect.any(Number),
        checkpointFailures: 0
      })
      expect(after.counters.checkpointSaves).toBeGreaterThanOrEqual(2)
      expect(after.lagSeconds).toBe(0)
      expect(after.uptimeMs).toBeGreaterThan(0)
      expect(after.uptimeMs).toBeLessThanOrEqual(now - startedAt)
      for (const stage of [after.health.fetching, after.health.notifier, after.health.checkpointing]) {
        expect(stage.consecutiveFailures).toBe(0)
        expect(stage.lastError).toBeUndefined()
        expect(stage.lastProgressAt).toBeGreaterThanOrEqual(startedAt)
        expect(stage.lastProgressAt).toBeLessThanOrEqual(now)
      }
      expect(saved).toEqual({ timeBucket: historyBucket, eventId: ids[4] })
    } finally {
      release()
      await pump.stop()
    }
    expect(await pump.snapshot()).toBeUndefined()
  })
})
