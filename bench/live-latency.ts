/**
 * Live latency: time from ingest at the emulator to the handler's call, p50 / p99 over LIVE_EVENTS live events at
 * RATE events/s, for each notifier. Prints figures; asserts nothing.
 *
 *   npm run bench:live                 (LIVE_EVENTS=1000, RATE=50 by default; needs NATS on 127.0.0.1:4222)
 */
import { Effect, Fiber, Layer } from "effect"
import { start } from "../src/emulator/index.ts"
import { DataPump, type FlowcoreDataPumpNotifierOptions, flowcoreLayer, MemoryStateStore } from "../src/index.ts"

const LIVE_EVENTS = Number(process.env.LIVE_EVENTS ?? 1000)
const RATE = Number(process.env.RATE ?? 50)
const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222"
const source = { tenant: "live", dataCore: "live-dc", flowType: "live.0", eventTypes: ["live.created.0"] }

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

const measure = async (notifier: FlowcoreDataPumpNotifierOptions) => {
  const emulator = await start({ nats: { servers: NATS } })
  emulator.ingest({ ...source, eventType: "live.created.0", payload: { warmup: true } })
  const ingestedAt = new Map<string, number>()
  const latencies: Array<number> = []
  let resolveDone: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve
  })
  const services = Layer.mergeAll(
    flowcoreLayer({
      auth: { apiKey: "fc_emulator_secret" },
      dataSource: source,
      baseUrlOverride: emulator.url,
      notifier
    }),
    MemoryStateStore.layer()
  )
  const fiber = Effect.runFork(
    DataPump.run({
      processor: {
        concurrency: 10,
        handleEvent: (event) =>
          Effect.sync(() => {
            const at = ingestedAt.get(event.eventId)
            if (at === undefined) return
            latencies.push(performance.now() - at)
            if (latencies.length === LIVE_EVENTS) resolveDone()
          })
      }
    }).pipe(Effect.provide(services))
  )
  await new Promise((resolve) => setTimeout(resolve, 1500)) // connected and live
  for (let i = 0; i < LIVE_EVENTS; i++) {
    const id = emulator.ingest({ ...source, eventType: "live.created.0", payload: { n: i } })
    ingestedAt.set(id, performance.now())
    await new Promise((resolve) => setTimeout(resolve, 1000 / RATE))
  }
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 30_000))])
  await Effect.runPromise(Fiber.interrupt(fiber))
  await emulator.close()
  const sorted = [...latencies].sort((a, b) => a - b)
  return { received: latencies.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) }
}

console.log(`| notifier | events | p50 ms | p99 ms |`)
console.log(`| --- | --- | --- | --- |`)
for (const notifier of [
  { type: "websocket" },
  { type: "nats", servers: [NATS] },
  { type: "poller", intervalMs: 500 }
] satisfies Array<FlowcoreDataPumpNotifierOptions>) {
  const result = await measure(notifier)
  console.log(
    `| ${notifier.type}${notifier.type === "poller" ? " (500 ms)" : ""} | ${result.received} | ${result.p50.toFixed(
      1
    )} | ${result.p99.toFixed(1)} |`
  )
}
