/**
 * OpenTelemetry tracing: the pump's spans (DataPump.fetchPage > FlowcoreHttp.fetchPage > GET, DataPump.handleEvent,
 * DataPump.saveCheckpoint, DataPump.liveWait, WebSocketNotifier.connect) exported through `NodeSdk.layer`. A producer
 * writes live events from inside its own span and stores the W3C `traceparent` in the event metadata; the pump's
 * handler span links to it, so a tracing backend can jump from the order that was placed to the work it caused.
 *
 * Spans go to the OTLP/HTTP endpoint in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (for example a local collector or Jaeger
 * at http://127.0.0.1:4318/v1/traces); without it they are printed to the console. The pump follows live events
 * until `--duration` seconds from now, the SDK flushes on shutdown, and the process exits by itself.
 *
 *   node examples/tracing.ts [--duration <seconds>]   (default 3)
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces node examples/tracing.ts
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { NodeRuntime } from "@effect/platform-node"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Schedule } from "effect"
import * as FlowcoreEmulator from "../src/emulator/index.ts"
import { DataPump, flowcoreLayer, MemoryStateStore, TimeBucket } from "../src/index.ts"
import { API_KEY, exampleArgs, HOUR_MS, seedHistory, source } from "./support.ts"

const { durationSeconds } = exampleArgs(3)

const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

/** Counts what is exported by span name, for the summary printed once the SDK has flushed. */
const exportedByName = new Map<string, number>()
const counted = (exporter: SpanExporter): SpanExporter => ({
  export: (spans, resultCallback) => {
    for (const span of spans) exportedByName.set(span.name, (exportedByName.get(span.name) ?? 0) + 1)
    exporter.export(spans, resultCallback)
  },
  shutdown: () => exporter.shutdown(),
  forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve()
})

const Tracing = NodeSdk.layer(() => ({
  resource: { serviceName: "data-pump-tracing-example" },
  spanProcessor: new BatchSpanProcessor(
    counted(endpoint === undefined ? new ConsoleSpanExporter() : new OTLPTraceExporter({ url: endpoint }))
  )
}))

/** Places an order inside a producer span and stores that span's trace context with the event. */
const placeOrder = (emulator: FlowcoreEmulator.Emulator, n: number) =>
  Effect.gen(function* () {
    const span = yield* Effect.currentSpan
    emulator.ingest({
      ...source,
      eventType: "order.created.0",
      payload: { orderId: `live-${n}`, amount: n },
      metadata: { traceparent: `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}` }
    })
  }).pipe(Effect.withSpan("Producer.placeOrder", { attributes: { "order.id": `live-${n}` } }), Effect.orDie)

const program = Effect.gen(function* () {
  const emulator = yield* FlowcoreEmulator.make()
  const seeded = seedHistory(emulator, 20, 2).length
  const stopAt = new Date(Date.now() + durationSeconds * 1_000)
  yield* Effect.log(
    `emulator at ${emulator.url} with ${seeded} historical events; exporting spans to ${endpoint ?? "the console"}`
  )

  let placed = 0
  yield* Effect.suspend(() =>
    Date.now() < stopAt.getTime() - 300 ? placeOrder(emulator, placed++) : Effect.void
  ).pipe(Effect.repeat(Schedule.spaced("500 millis")), Effect.delay("500 millis"), Effect.forkScoped)

  const services = Layer.mergeAll(
    flowcoreLayer({ auth: { apiKey: API_KEY }, dataSource: source, baseUrlOverride: emulator.url }),
    MemoryStateStore.layer({ timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR_MS) })
  )
  let handled = 0
  yield* DataPump.run({
    stopAt,
    rolloverSettleMs: 500,
    processor: {
      concurrency: 4,
      handleEvent: (event) =>
        Effect.sync(() => {
          handled++
        }).pipe(Effect.withSpan("Example.recordOrder", { attributes: { "order.id": String(event.payload.orderId) } }))
    }
  }).pipe(Effect.provide(services))
  yield* Effect.log(`handled ${handled} events (${seeded} historical, ${placed} placed live)`)
})

const summary = Effect.suspend(() =>
  Effect.log(
    `exported spans: ${[...exportedByName]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, count]) => `${name}=${count}`)
      .join(", ")}`
  )
)

// Releasing the Tracing layer shuts the SDK down, which flushes every span still batched; the summary comes after.
NodeRuntime.runMain(Effect.scoped(program).pipe(Effect.provide(Tracing), Effect.andThen(summary)))
