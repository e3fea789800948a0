/**
 * HTTP throughput: events per second from the emulator through FlowcoreHttp and the engine to a no-op handler,
 * beside the ceiling — a plain loop paging the same emulator with fetch + JSON.parse — in the same run.
 * The emulator runs as its own process (like a real server, on the other core), seeded through its persistence file;
 * with IN_PROCESS=1 it shares the pump's process (and core) instead. Prints a markdown table; asserts nothing.
 *
 *   npm run bench:http                 (EVENTS=100000 by default)
 *   IN_PROCESS=1 npm run bench:http
 *   ONLY=1000x1,100x10 npm run bench:http   (just these bufferSize x concurrency rows)
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { start } from "../src/emulator/index.ts"
import { DataPump, flowcoreLayer, MemoryStateStore, TimeBucket } from "../src/index.ts"

const EVENTS = Number(process.env.EVENTS ?? 100_000)
const HOUR = 3_600_000
const source = { tenant: "bench", dataCore: "bench-dc", flowType: "bench.0", eventTypes: ["bench.created.0"] }
const KEY = "fc_emulator_secret"

const dir = mkdtempSync(join(tmpdir(), "bench-http-"))
const persistPath = join(dir, "events.ndjson")
const first = Date.now() - 6 * HOUR
const inProcess = process.env.IN_PROCESS === "1"

/**
 * Ingests the events. Out of process, the seeding emulator is closed and dropped: its events would otherwise stay in
 * this process's heap, where every garbage collection of the measured loops would have to walk them.
 */
const seed = async () => {
  const seeder = await start({ persistPath })
  seeder.ingestMany(
    Array.from({ length: EVENTS }, (_, i) => ({
      ...source,
      eventType: "bench.created.0",
      payload: { n: i, text: "a modest payload of some forty characters" },
      eventTime: new Date(first + Math.floor((i * 5 * HOUR) / EVENTS))
    }))
  )
  const ids = seeder.ids(source.tenant, source.dataCore, source.flowType)
  const eventTypeId = ids.eventTypeIds["bench.created.0"] as string
  if (inProcess) return { eventTypeId, inProcessEmulator: seeder }
  await seeder.close()
  return { eventTypeId, inProcessEmulator: undefined }
}
const { eventTypeId, inProcessEmulator } = await seed()

const server = inProcess
  ? undefined
  : spawn(process.execPath, ["src/emulator/cli.ts", "--port", "0", "--persist", persistPath], {
      stdio: ["ignore", "pipe", "inherit"]
    })
const url =
  server === undefined
    ? String(inProcessEmulator?.url)
    : await new Promise<string>((resolve, reject) => {
        let out = ""
        server.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString()
          const match = /listening on (http:\/\/\S+)/.exec(out)
          if (match?.[1] !== undefined) resolve(match[1])
        })
        server.once("exit", (code) => reject(new Error(`emulator exited with ${code}`)))
      })
const emulator = { url }
const buckets = Array.from({ length: 6 }, (_, h) => TimeBucket.fromDate(first + h * HOUR))
const stopAt = new Date(first + 5 * HOUR + 1)

let peakRss = 0
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss)
}, 20)
const resetPeak = () => {
  global.gc?.()
  peakRss = process.memoryUsage().rss
}

/** The ceiling: page every bucket with fetch and JSON.parse, nothing else. */
const ceiling = async (pageSize: number) => {
  resetPeak()
  const began = performance.now()
  let count = 0
  for (const bucket of buckets) {
    let cursor: string | undefined
    do {
      const params = new URLSearchParams({ eventTypeId, timeBucket: bucket, pageSize: String(pageSize) })
      if (cursor !== undefined) params.set("cursor", cursor)
      const response = await fetch(`${emulator.url}/api/v1/events?${params}`, {
        headers: { authorization: `ApiKey emulator:${KEY}` }
      })
      const page = JSON.parse(await response.text()) as { events: Array<unknown>; nextCursor?: string }
      count += page.events.length
      cursor = page.nextCursor
    } while (cursor !== undefined)
  }
  if (count !== EVENTS) throw new Error(`ceiling read ${count} of ${EVENTS}`)
  return { rate: EVENTS / ((performance.now() - began) / 1000), rss: peakRss }
}

const services = Layer.mergeAll(
  flowcoreLayer({
    auth: { apiKey: KEY },
    dataSource: source,
    baseUrlOverride: emulator.url,
    notifier: { type: "poller", intervalMs: 1000 }
  }),
  MemoryStateStore.layer({ timeBucket: buckets[0] as TimeBucket.TimeBucket })
)

const pump = async (bufferSize: number, concurrency: number, slowMs: number) => {
  let handled = 0
  const processor =
    slowMs > 0
      ? {
          concurrency,
          handleEvent: () =>
            Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, slowMs))).pipe(
              Effect.andThen(
                Effect.sync(() => {
                  handled++
                })
              )
            )
        }
      : {
          concurrency,
          handler: (events: ReadonlyArray<unknown>) =>
            Effect.sync(() => {
              handled += events.length
            })
        }
  resetPeak()
  let began = 0
  await Effect.runPromise(
    Effect.gen(function* () {
      began = performance.now()
      yield* DataPump.run({ bufferSize, stopAt, rolloverSettleMs: 0, processor })
    }).pipe(Effect.provide(services))
  )
  if (handled !== EVENTS) throw new Error(`pump handled ${handled} of ${EVENTS}`)
  return { rate: EVENTS / ((performance.now() - began) / 1000), rss: peakRss }
}

/** `ONLY=1000x1,100x10` keeps just those no-op rows (and drops the slow-handler row); for profiling one shape. */
const only = process.env.ONLY?.split(",").map((row) => row.trim())
const wanted = (bufferSize: number, concurrency: number) =>
  only === undefined || only.includes(`${bufferSize}x${concurrency}`)

const fmt = (n: number) => Math.round(n).toLocaleString("en")
const mb = (n: number) => Math.round(n / 1e6)

const top = await ceiling(1000)
console.log(`emulator ${inProcess ? "in this process" : "in its own process"}`)
console.log(`ceiling (fetch + JSON.parse, pageSize 1000): ${fmt(top.rate)} events/s, peak RSS ${mb(top.rss)} MB`)
console.log("")
console.log("| bufferSize | concurrency | handler | events/s | × ceiling | peak RSS MB |")
console.log("| --- | --- | --- | --- | --- | --- |")
for (const bufferSize of [100, 1_000, 10_000]) {
  for (const concurrency of [1, 10, 100]) {
    if (!wanted(bufferSize, concurrency)) continue
    const result = await pump(bufferSize, concurrency, 0)
    console.log(
      `| ${bufferSize} | ${concurrency} | no-op batch | ${fmt(result.rate)} | ${(result.rate / top.rate).toFixed(2)} | ${mb(
        result.rss
      )} |`
    )
  }
}
if (only === undefined) {
  const slow = await pump(1_000, 100, 1)
  console.log(
    `| 1000 | 100 | 1 ms per event | ${fmt(slow.rate)} | ${(slow.rate / top.rate).toFixed(2)} | ${mb(slow.rss)} |`
  )
}
clearInterval(sampler)
await inProcessEmulator?.close()
server?.kill("SIGTERM")
rmSync(dir, { recursive: true, force: true })
