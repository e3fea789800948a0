/**
 * HTTP throughput: events per second from the emulator through FlowcoreHttp and the engine to a no-op handler,
 * beside the ceiling — a plain loop paging the same emulator with fetch + JSON.parse — in the same run.
 * The emulator runs as its own process (like a real server, on the other core), seeded over its ingestion API, so
 * this process holds nothing but what it measures; with IN_PROCESS=1 it shares the pump's process (and core) instead.
 * This machine kind drifts by tens of percent within a minute, so every row runs REPEAT times (5 by default), each
 * time between two ceiling runs, and shows the median rate and the median ratio to the ceiling runs beside it. A row
 * whose buffer is smaller than a page of 1,000 still reads pages of 1,000 (handed to the buffer in parts); it is also
 * compared with the loop reading pages of its buffer's size, which is what pages no larger than the buffer allow.
 * Every run builds a new pump, which pays for its start (six requests before the first page: name translation, the
 * tenant lookup, the bucket list) and for optimising its code again (V8 drops a pump's optimised code with the pump);
 * at 100,000 events that was ~10 % of a `concurrency: 1` run, so runs are 300,000 events long, and the time to the
 * first event is shown on its own.
 * Prints a markdown table; asserts nothing.
 *
 *   npm run bench:http                 (EVENTS=300000 by default)
 *   IN_PROCESS=1 npm run bench:http
 *   ONLY=1000x1,100x10 npm run bench:http   (just these bufferSize x concurrency rows)
 */
import { spawn } from "node:child_process"
import { Effect, Layer } from "effect"
import { start } from "../src/emulator/index.ts"
import { DataPump, flowcoreLayer, MemoryStateStore, TimeBucket } from "../src/index.ts"

const EVENTS = Number(process.env.EVENTS ?? 300_000)
const REPEAT = Math.max(1, Number(process.env.REPEAT ?? 5))
const HOUR = 3_600_000
const source = { tenant: "bench", dataCore: "bench-dc", flowType: "bench.0", eventTypes: ["bench.created.0"] }
const KEY = "fc_emulator_secret"

const first = Date.now() - 6 * HOUR
const inProcess = process.env.IN_PROCESS === "1"
const payload = (i: number) => ({ n: i, text: "a modest payload of some forty characters" })
const eventTime = (i: number) => new Date(first + Math.floor((i * 5 * HOUR) / EVENTS))

const emulatorProcess = () =>
  new Promise<{ readonly url: string; readonly stop: () => void }>((resolve, reject) => {
    const child = spawn(process.execPath, ["src/emulator/cli.ts", "--port", "0"], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match?.[1] !== undefined) resolve({ url: match[1], stop: () => child.kill("SIGTERM") })
    })
    child.once("exit", (code) => reject(new Error(`emulator exited with ${code}`)))
  })

const getJson = async (url: string): Promise<unknown> => {
  const response = await fetch(url, { headers: { authorization: `ApiKey emulator:${KEY}` } })
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`)
  return response.json()
}

/** Ingests over HTTP in batches of 1,000 (one event time per batch), then looks the event type id up by name. */
const seedOverHttp = async (url: string): Promise<string> => {
  const path = `${url}/events/${source.tenant}/${source.dataCore}/${source.flowType}/bench.created.0`
  for (let from = 0; from < EVENTS; from += 1000) {
    const batch = Array.from({ length: Math.min(1000, EVENTS - from) }, (_, i) => payload(from + i))
    const response = await fetch(path, {
      method: "POST",
      headers: {
        authorization: KEY,
        "content-type": "application/json",
        "x-flowcore-event-time": eventTime(from).toISOString()
      },
      body: JSON.stringify(batch)
    })
    if (!response.ok) throw new Error(`ingest: ${response.status} ${await response.text()}`)
  }
  const [dataCore] = (await getJson(`${url}/api/v1/data-cores?tenant=${source.tenant}&name=${source.dataCore}`)) as [
    { id: string }
  ]
  const [flowType] = (await getJson(`${url}/api/v1/flow-types?dataCoreId=${dataCore.id}&name=${source.flowType}`)) as [
    { id: string }
  ]
  const [eventType] = (await getJson(`${url}/api/v1/event-types?flowTypeId=${flowType.id}&name=bench.created.0`)) as [
    { id: string }
  ]
  return eventType.id
}

const { url, eventTypeId, stopEmulator } = await (async () => {
  if (inProcess) {
    const emulator = await start({})
    emulator.ingestMany(
      Array.from({ length: EVENTS }, (_, i) => ({
        ...source,
        eventType: "bench.created.0",
        payload: payload(i),
        eventTime: eventTime(i)
      }))
    )
    const ids = emulator.ids(source.tenant, source.dataCore, source.flowType)
    return {
      url: emulator.url,
      eventTypeId: ids.eventTypeIds["bench.created.0"] as string,
      stopEmulator: () => emulator.close()
    }
  }
  const server = await emulatorProcess()
  return { url: server.url, eventTypeId: await seedOverHttp(server.url), stopEmulator: async () => server.stop() }
})()
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
  let firstMs = 0
  let count = 0
  for (const bucket of buckets) {
    let cursor: string | undefined
    do {
      const params = new URLSearchParams({ eventTypeId, timeBucket: bucket, pageSize: String(pageSize) })
      if (cursor !== undefined) params.set("cursor", cursor)
      const response = await fetch(`${url}/api/v1/events?${params}`, {
        headers: { authorization: `ApiKey emulator:${KEY}` }
      })
      const page = JSON.parse(await response.text()) as { events: Array<unknown>; nextCursor?: string }
      if (count === 0) firstMs = performance.now() - began
      count += page.events.length
      cursor = page.nextCursor
    } while (cursor !== undefined)
  }
  if (count !== EVENTS) throw new Error(`ceiling read ${count} of ${EVENTS}`)
  return { rate: EVENTS / ((performance.now() - began) / 1000), rss: peakRss, firstMs }
}

const services = Layer.mergeAll(
  flowcoreLayer({
    auth: { apiKey: KEY },
    dataSource: source,
    baseUrlOverride: url,
    notifier: { type: "poller", intervalMs: 1000 }
  }),
  MemoryStateStore.layer({ timeBucket: buckets[0] as TimeBucket.TimeBucket })
)

const pump = async (bufferSize: number, concurrency: number, slowMs: number) => {
  let handled = 0
  let firstAt = 0
  const first = () => {
    if (firstAt === 0) firstAt = performance.now()
  }
  const processor =
    slowMs > 0
      ? {
          concurrency,
          handleEvent: () =>
            Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, slowMs))).pipe(
              Effect.andThen(
                Effect.sync(() => {
                  first()
                  handled++
                })
              )
            )
        }
      : {
          concurrency,
          handler: (events: ReadonlyArray<unknown>) =>
            Effect.sync(() => {
              first()
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
  return { rate: EVENTS / ((performance.now() - began) / 1000), rss: peakRss, firstMs: firstAt - began }
}

/** `ONLY=1000x1,100x10` keeps just those no-op rows (and drops the slow-handler row); for profiling one shape. */
const only = process.env.ONLY?.split(",").map((row) => row.trim())
const wanted = (bufferSize: number, concurrency: number) =>
  only === undefined || only.includes(`${bufferSize}x${concurrency}`)

const fmt = (n: number) => Math.round(n).toLocaleString("en")
const mb = (n: number) => Math.round(n / 1e6)
const median = (values: ReadonlyArray<number>) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number

const ceilings: Array<{ rate: number; rss: number; firstMs: number }> = []
const smallPages: Array<number> = []
/**
 * REPEAT runs of one row, each between two ceiling runs (the last ceiling run is shared with the next row). A row with
 * a buffer smaller than a page of 1,000 is also compared with the same loop reading pages of the buffer's size, run
 * right after it.
 */
const measureRow = async (bufferSize: number, concurrency: number, slowMs: number) => {
  const rates: Array<number> = []
  const ratios: Array<number> = []
  const samePageRatios: Array<number> = []
  const firstMs: Array<number> = []
  let rss = 0
  if (ceilings.length === 0) ceilings.push(await ceiling(1000))
  for (let i = 0; i < REPEAT; i++) {
    const before = ceilings[ceilings.length - 1] as { rate: number }
    const result = await pump(bufferSize, concurrency, slowMs)
    const after = await ceiling(1000)
    ceilings.push(after)
    rates.push(result.rate)
    firstMs.push(result.firstMs)
    const ratio = result.rate / ((before.rate + after.rate) / 2)
    ratios.push(ratio)
    if (bufferSize < 1000) {
      const samePage = (await ceiling(bufferSize)).rate
      smallPages.push(samePage)
      samePageRatios.push(result.rate / samePage)
    } else {
      samePageRatios.push(ratio)
    }
    rss = Math.max(rss, result.rss)
  }
  return {
    rate: median(rates),
    ratio: median(ratios),
    samePageRatio: median(samePageRatios),
    firstMs: median(firstMs),
    rss
  }
}

const row = (
  bufferSize: number,
  concurrency: number,
  handler: string,
  result: Awaited<ReturnType<typeof measureRow>>
) =>
  `| ${bufferSize} | ${concurrency} | ${handler} | ${fmt(result.rate)} | ${result.ratio.toFixed(2)} | ` +
  `${result.samePageRatio.toFixed(2)} | ${result.firstMs.toFixed(0)} | ${mb(result.rss)} |`

// JIT warm-up for both sides, not reported.
await ceiling(1000)
await pump(1000, 10, 0)

const rows: Array<string> = []
for (const bufferSize of [100, 1_000, 10_000]) {
  for (const concurrency of [1, 10, 100]) {
    if (!wanted(bufferSize, concurrency)) continue
    rows.push(row(bufferSize, concurrency, "no-op batch", await measureRow(bufferSize, concurrency, 0)))
    console.error(rows[rows.length - 1])
  }
}
if (only === undefined) rows.push(row(1000, 100, "1 ms per event", await measureRow(1_000, 100, 1)))
clearInterval(sampler)
await stopEmulator()

const ceilingRates = ceilings.map((run) => run.rate)
console.log(
  `emulator ${inProcess ? "in this process" : "in its own process"}; ${fmt(EVENTS)} events; ${REPEAT} runs per row`
)
console.log(
  `ceiling (fetch + JSON.parse, pageSize 1000), ${ceilings.length} runs: median ${fmt(median(ceilingRates))} events/s ` +
    `(${fmt(Math.min(...ceilingRates))}–${fmt(Math.max(...ceilingRates))}), first page after ` +
    `${median(ceilings.map((run) => run.firstMs)).toFixed(0)} ms (median), peak RSS ${mb(Math.max(...ceilings.map((run) => run.rss)))} MB`
)
if (smallPages.length > 0) {
  console.log(`the same loop with pageSize 100, ${smallPages.length} runs: median ${fmt(median(smallPages))} events/s`)
}
console.log("")
console.log(
  "| bufferSize | concurrency | handler | events/s (median) | × ceiling (median) | × loop, pages of bufferSize | first event ms | peak RSS MB |"
)
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (const row of rows) console.log(row)
