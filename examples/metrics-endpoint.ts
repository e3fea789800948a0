/**
 * Prometheus metrics: a plain `node:http` server exposes `dataPumpPromRegistry` at `/metrics` (the README's Express
 * snippet without Express) while a push-mode pump replays some history. Once the pump has caught up (or
 * `--duration` has passed) the program scrapes its own endpoint once, prints the `flowcore_data_pump_*` samples
 * (histogram buckets left out) and exits.
 *
 *   node examples/metrics-endpoint.ts [--duration <seconds>]   (an upper bound; default 10)
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { start } from "../src/emulator/index.ts"
import { dataPumpPromRegistry, FlowcoreDataPump, type FlowcoreDataPumpState, TimeBucket } from "../src/index.ts"
import { API_KEY, exampleArgs, HOUR_MS, seedHistory, sleep, source } from "./support.ts"

const { durationSeconds } = exampleArgs(10)

const server = createServer((request, response) => {
  if (request.url !== "/metrics") {
    response.writeHead(404).end()
    return
  }
  dataPumpPromRegistry.metrics().then(
    (text) => response.writeHead(200, { "Content-Type": dataPumpPromRegistry.contentType }).end(text),
    (error: unknown) => response.writeHead(500).end(String(error))
  )
})
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
const metricsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`
console.log(`metrics at ${metricsUrl}`)

const emulator = await start()
const seeded = seedHistory(emulator, 2_000, 3).length

let state: FlowcoreDataPumpState | null = { timeBucket: TimeBucket.fromDate(Date.now() - 4 * HOUR_MS) }
let handled = 0
let failedOnce = 0
const pump = FlowcoreDataPump.create({
  auth: { apiKey: API_KEY },
  dataSource: source,
  baseUrlOverride: emulator.url,
  stateManager: {
    getState: () => state,
    setState: (next) => {
      state = next
    }
  },
  processor: {
    concurrency: 20,
    handler: async (events) => {
      // The first batch fails once, so the failure and redelivery counters move too.
      if (failedOnce === 0) {
        failedOnce++
        throw new Error("the first batch fails once")
      }
      handled += events.length
    }
  },
  bufferSize: 200
})
await pump.start()

const deadline = Date.now() + durationSeconds * 1000
while (handled < seeded && Date.now() < deadline) await sleep(50)
console.log(`handled ${handled} of ${seeded} events`)

const scraped = await (await fetch(metricsUrl)).text()
const samples = scraped.split("\n").filter((line) => line.startsWith("flowcore_data_pump_"))
// Histogram buckets are one line per bound; their _sum and _count lines are printed and say enough here.
const buckets = samples.filter((line) => /^flowcore_data_pump_\w+_bucket\{/.test(line))
for (const line of samples) if (!buckets.includes(line)) console.log(line)
console.log(`${samples.length} flowcore_data_pump_* samples (${buckets.length} histogram bucket lines not shown)`)

await pump.stop()
await emulator.close()
await new Promise<void>((resolve) => server.close(() => resolve()))
