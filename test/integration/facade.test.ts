import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { type Emulator, start } from "../../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreDataPumpState, type FlowcoreEvent, TimeBucket } from "../../src/index.ts"

const HOUR = 3_600_000
const source = {
  tenant: "acme",
  dataCore: "shop",
  flowType: "orders.0",
  eventTypes: ["order.created.0", "order.paid.0"]
}

let emulator: Emulator
beforeEach(async () => {
  emulator = await start()
})
afterEach(async () => {
  await emulator.close()
})

const seed = (count: number, hoursAgo: number) => {
  const now = Date.now()
  return emulator.ingestMany(
    Array.from({ length: count }, (_, i) => ({
      ...source,
      eventType: source.eventTypes[i % 2] as string,
      payload: { n: i },
      eventTime: new Date(now - hoursAgo * HOUR + Math.floor((i * (hoursAgo - 1) * HOUR) / count))
    }))
  )
}

describe("FlowcoreDataPump facade against the emulator", () => {
  it("push mode: delivers history in order, checkpoints the last event, stops at stopAt", async () => {
    const ids = seed(500, 4)
    let state: FlowcoreDataPumpState | null = { timeBucket: TimeBucket.fromDate(Date.now() - 5 * HOUR) }
    const seen: Array<string> = []
    const done = new Promise<Error | undefined>((resolve) => {
      const pump = FlowcoreDataPump.create({
        auth: { apiKey: "fc_emulator_secret" },
        dataSource: source,
        baseUrlOverride: emulator.url,
        stateManager: {
          getState: () => state,
          setState: (s) => {
            state = s
          }
        },
        processor: {
          concurrency: 5,
          handler: async (events: Array<FlowcoreEvent>) => {
            for (const event of events) seen.push(event.eventId)
          }
        },
        notifier: { type: "poller", intervalMs: 200 },
        bufferSize: 50,
        stopAt: new Date(Date.now() - 30_000)
      })
      void pump.start((error) => resolve(error))
    })
    expect(await done).toBeUndefined()
    expect(seen).toEqual(ids)
    expect(state).toEqual({ timeBucket: expect.any(String), eventId: ids[ids.length - 1] })
  })
})
