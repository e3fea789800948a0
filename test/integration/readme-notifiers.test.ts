/**
 * The original README's three notifier snippets: each one delivers live events from the emulator well before the
 * pump's 20 s fallback wait would. The NATS test needs a NATS server on 127.0.0.1:4222 and fails when it is missing.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { DEFAULT_API_KEY, type Emulator } from "../../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreDataPumpNotifierOptions } from "../../src/index.ts"
import {
  CREATED,
  difference,
  eventually,
  idsOf,
  ingestLive,
  ingestUntilDelivered,
  PAID,
  PumpTracker,
  source,
  startEmulator
} from "./readme-support.ts"

let emulator: Emulator | undefined
const pumps = new PumpTracker()

afterEach(async () => {
  await pumps.stopAll()
  await emulator?.close()
  emulator = undefined
})

const livePump = (running: Emulator, notifier: FlowcoreDataPumpNotifierOptions, handled: Array<string>) =>
  pumps.track(
    FlowcoreDataPump.create({
      auth: { apiKey: DEFAULT_API_KEY },
      dataSource: source,
      stateManager: { getState: () => null, setState: () => {} },
      processor: { handler: (events) => void handled.push(...idsOf(events)) },
      notifier,
      baseUrlOverride: running.url
    })
  )

/** Live events after the first delivered one, ingested in a burst and delivered in order. */
const expectLiveDelivery = async (running: Emulator, handled: Array<string>) => {
  const probes = await ingestUntilDelivered(() => ingestLive(running), handled)
  const burst = [ingestLive(running, PAID), ingestLive(running, CREATED), ingestLive(running, PAID)]
  await eventually(
    () => handled.length >= probes.length + burst.length,
    5_000,
    () => `the burst of live events: ${difference([...probes, ...burst], handled)}`
  )
  expect(handled).toEqual([...probes, ...burst])
}

describe("README: notifiers", () => {
  it('websocket: { type: "websocket" } follows the emulator\'s /notifications socket and closes it on stop', async () => {
    const running = await startEmulator()
    emulator = running
    const handled: Array<string> = []
    const pump = livePump(
      running,
      {
        type: "websocket"
      },
      handled
    )
    await pump.start()
    await expectLiveDelivery(running, handled)
    expect(running.stats.wsConnections).toBe(1)
    await pump.stop()
    await eventually(() => running.stats.wsConnections === 0, 2_000, "the socket to close")
  })

  it('nats: { type: "nats", servers } wakes the pump on the emulator\'s NATS notifications', async () => {
    const running = await startEmulator({ nats: { servers: "nats://127.0.0.1:4222" } })
    emulator = running
    const handled: Array<string> = []
    const pump = livePump(
      running,
      {
        type: "nats",
        servers: ["nats://127.0.0.1:4222"]
      },
      handled
    )
    await pump.start()
    await expectLiveDelivery(running, handled)
    expect(running.stats.natsPublished).toBeGreaterThanOrEqual(handled.length)
    expect(running.stats.natsErrors).toBe(0)
    // Only NATS woke the pump: it never opened the WebSocket.
    expect(running.stats.wsConnectionsTotal).toBe(0)
  })

  it('poller: { type: "poller", intervalMs } re-reads on its interval', async () => {
    const running = await startEmulator()
    emulator = running
    const handled: Array<string> = []
    const pump = livePump(
      running,
      {
        type: "poller",
        intervalMs: 300 // the README's 5000, shortened to keep the test fast
      },
      handled
    )
    await pump.start()
    await expectLiveDelivery(running, handled)
    expect(running.stats.wsConnectionsTotal).toBe(0)
    const eventsRequests = () => running.stats.byPath["/api/v1/events"] ?? 0
    const seen = eventsRequests()
    await eventually(() => eventsRequests() >= seen + 2, 3_000, "two more polls")
  })
})
