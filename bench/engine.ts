/**
 * Engine throughput: events per second from the InMemory source through the buffer and the processor to a no-op
 * handler, for bufferSize × concurrency × handler shape, with peak RSS. Prints a table; asserts nothing.
 *
 *   npm run bench:engine            (EVENTS=200000 by default)
 *   ONLY=batch:1000x1 npm run bench:engine   (just these shape:bufferSize x concurrency rows)
 *   REPEAT=3 npm run bench:engine            (runs per row; the median is shown, 3 by default)
 */
import { Effect, Layer } from "effect"
import type { FlowcoreEvent } from "../src/domain/FlowcoreEvent.ts"
import { EventBufferLive } from "../src/layers/buffer/EventBufferLive.ts"
import { InMemoryDataSource } from "../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../src/layers/notifier/Manual.ts"
import { MemoryStateStore } from "../src/layers/stateStore/Memory.ts"
import * as DataPump from "../src/pump/DataPump.ts"
import { PumpMetrics } from "../src/services/PumpMetrics.ts"

const EVENTS = Number(process.env.EVENTS ?? 200_000)
const HOUR = 3_600_000
const start = Date.now() - 6 * HOUR
// Built once, outside the measured runs.
const events: Array<FlowcoreEvent> = Array.from({ length: EVENTS }, (_, i) =>
  InMemoryDataSource.event({ eventType: "created", payload: { n: i }, at: start + Math.floor((i * 4 * HOUR) / EVENTS) })
)

const layers = Layer.mergeAll(
  InMemoryDataSource.layer({ events, eventTypes: ["created"] }),
  ManualNotifier.layer,
  MemoryStateStore.layer({
    timeBucket: `${new Date(start).toISOString().replace(/\D/g, "").slice(0, 10)}0000`
  } as never),
  EventBufferLive.pipe(Layer.provide(PumpMetrics.none)),
  PumpMetrics.none
)

const measure = async (bufferSize: number, concurrency: number, shape: "batch" | "event") => {
  let handled = 0
  const processor =
    shape === "batch"
      ? {
          concurrency,
          handler: (batch: ReadonlyArray<unknown>) =>
            Effect.sync(() => {
              handled += batch.length
            })
        }
      : {
          concurrency,
          handleEvent: () =>
            Effect.sync(() => {
              handled++
            })
        }
  let began = 0
  await Effect.runPromise(
    Effect.gen(function* () {
      // Timed from inside, once the layers (and the in-memory store) are built.
      began = performance.now()
      yield* DataPump.run({ bufferSize, stopAt: new Date(start + 5 * HOUR), rolloverSettleMs: 0, processor })
    }).pipe(Effect.provide(layers))
  )
  const seconds = (performance.now() - began) / 1000
  if (handled !== EVENTS) throw new Error(`handled ${handled} of ${EVENTS}`)
  return Math.round(EVENTS / seconds)
}

// This machine kind drifts by tens of percent within a minute: each row is the median of REPEAT runs.
const REPEAT = Math.max(1, Number(process.env.REPEAT ?? 3))
const medianRate = async (bufferSize: number, concurrency: number, shape: "batch" | "event") => {
  const rates: Array<number> = []
  for (let i = 0; i < REPEAT; i++) rates.push(await measure(bufferSize, concurrency, shape))
  return rates.sort((a, b) => a - b)[Math.floor(REPEAT / 2)] as number
}

console.log(`${EVENTS.toLocaleString("en")} events, no-op handler, InMemory source, median of ${REPEAT} runs`)
console.log("| handler | bufferSize | concurrency | events/s | peak RSS MB |")
console.log("| --- | --- | --- | --- | --- |")
const only = process.env.ONLY?.split(",").map((row) => row.trim())
const rows: Array<string> = []
for (const shape of ["batch", "event"] as const) {
  for (const bufferSize of [100, 1_000, 10_000]) {
    for (const concurrency of [1, 10, 100]) {
      if (only !== undefined && !only.includes(`${shape}:${bufferSize}x${concurrency}`)) continue
      const rate = await medianRate(bufferSize, concurrency, shape)
      const rssMb = Math.round(process.memoryUsage().rss / 1e6)
      rows.push(`| ${shape} | ${bufferSize} | ${concurrency} | ${rate.toLocaleString("en")} | ${rssMb} |`)
      console.log(rows[rows.length - 1])
    }
  }
}
