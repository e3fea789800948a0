/**
 * The engine's spans under a real OpenTelemetry SDK (in-memory exporter), driven by the TestClock: names, attributes,
 * outcomes, and the links from handler spans to the producers' W3C `traceparent`.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, describe, it, layer } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { parseTraceparent } from "../../src/pump/Processor.ts"
import { advanceUntil, atNow, HOUR, NOW, testLayers } from "./harness.ts"

const exporter = new InMemorySpanExporter()
const Tracing = NodeSdk.layer(() => ({
  resource: { serviceName: "test" },
  spanProcessor: new SimpleSpanProcessor(exporter)
}))

const TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN_A = "00f067aa0ba902b7"
const TRACE_B = "0af7651916cd43dd8448eb211c80319c"
const SPAN_B = "b7ad6b7169203331"

const spansNamed = (name: string): Array<ReadableSpan> =>
  exporter.getFinishedSpans().filter((span) => span.name === name)

const forEvent = (spans: ReadonlyArray<ReadableSpan>, event: FlowcoreEvent) =>
  spans
    .filter((span) => span.attributes["flowcore.event_id"] === event.eventId)
    .sort((a, b) => Number(a.attributes["flowcore.delivery"]) - Number(b.attributes["flowcore.delivery"]))

const linksOf = (span: ReadableSpan | undefined) =>
  (span?.links ?? []).map((link) => ({
    traceId: link.context.traceId,
    spanId: link.context.spanId,
    traceFlags: link.context.traceFlags
  }))

/** 2 h before NOW: a finished hour, read as history. */
const BUCKET_START = NOW - 2 * HOUR
const bucket = TimeBucket.fromDate(BUCKET_START)
const historyState = { timeBucket: TimeBucket.fromDate(NOW - 3 * HOUR) }

layer(Tracing)("engine spans", (it) => {
  it.effect("per-event handler spans carry type, bucket, delivery and outcome, and link to valid traceparents", () =>
    atNow(
      Effect.gen(function* () {
        exporter.reset()
        const source = yield* InMemoryDataSource
        const [sampled, invalid, flaky, plain, slow] = yield* source.append([
          { eventType: "created", at: BUCKET_START + 1000, metadata: { traceparent: `00-${TRACE_A}-${SPAN_A}-01` } },
          { eventType: "created", at: BUCKET_START + 2000, metadata: { traceparent: `00-${TRACE_A}-zzzz-01` } },
          { eventType: "updated", at: BUCKET_START + 3000, metadata: { traceparent: `00-${TRACE_B}-${SPAN_B}-00` } },
          { eventType: "created", at: BUCKET_START + 4000 },
          { eventType: "updated", at: BUCKET_START + 5000 }
        ])
        if (sampled === undefined || invalid === undefined || flaky === undefined || plain === undefined) {
          return assert.fail("events were not appended")
        }
        if (slow === undefined) return assert.fail("events were not appended")
        const attempts = new Map<string, number>()
        const fiber = yield* DataPump.run({
          stopAt: new Date(NOW - HOUR),
          handlerTimeoutMs: 1000,
          redelivery: { baseDelayMs: 100, maxDelayMs: 100 },
          processor: {
            handleEvent: (event, { attempt }) =>
              Effect.gen(function* () {
                attempts.set(event.eventId, attempt)
                if (event.eventId === flaky.eventId && attempt === 1) return yield* Effect.fail(new Error("boom"))
                if (event.eventId === slow.eventId && attempt === 1) yield* Effect.sleep("5 seconds")
              })
          }
        }).pipe(Effect.forkChild)
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(fiber)

        const handled = spansNamed("DataPump.handleEvent")
        assert.strictEqual(handled.length, 7, "5 first deliveries and 2 redeliveries")

        const [sampledSpan] = forEvent(handled, sampled)
        assert.deepStrictEqual(
          [
            sampledSpan?.attributes["flowcore.event_type"],
            sampledSpan?.attributes["flowcore.time_bucket"],
            sampledSpan?.attributes["flowcore.event_count"],
            sampledSpan?.attributes["flowcore.delivery"],
            sampledSpan?.attributes["flowcore.outcome"]
          ],
          ["created", bucket, 1, 1, "success"]
        )
        assert.deepStrictEqual(linksOf(sampledSpan), [{ traceId: TRACE_A, spanId: SPAN_A, traceFlags: 1 }])
        // A link, not a parent: the consumer's work is its own trace.
        assert.notStrictEqual(sampledSpan?.spanContext().traceId, TRACE_A)
        assert.isUndefined(sampledSpan?.parentSpanContext)

        assert.deepStrictEqual(linksOf(forEvent(handled, invalid)[0]), [], "an invalid traceparent is ignored")
        assert.deepStrictEqual(linksOf(forEvent(handled, plain)[0]), [])

        const flakySpans = forEvent(handled, flaky)
        assert.deepStrictEqual(
          flakySpans.map((span) => [span.attributes["flowcore.delivery"], span.attributes["flowcore.outcome"]]),
          [
            [1, "failure"],
            [2, "success"]
          ]
        )
        assert.strictEqual(flakySpans[0]?.status.code, 2, "a failed delivery ends its span with status ERROR")
        for (const span of flakySpans) {
          assert.deepStrictEqual(linksOf(span), [{ traceId: TRACE_B, spanId: SPAN_B, traceFlags: 0 }])
        }

        assert.deepStrictEqual(
          forEvent(handled, slow).map((span) => [
            span.attributes["flowcore.delivery"],
            span.attributes["flowcore.outcome"]
          ]),
          [
            [1, "timeout"],
            [2, "success"]
          ]
        )

        const fetched = spansNamed("DataPump.fetchPage")
        const withEvents = fetched.filter((span) => Number(span.attributes["flowcore.event_count"]) > 0)
        assert.deepStrictEqual(
          withEvents.map((span) => [
            span.attributes["flowcore.time_bucket"],
            span.attributes["flowcore.event_count"],
            span.attributes["flowcore.flow_type"]
          ]),
          [[bucket, 5, "flow-type"]]
        )
        for (const span of fetched) assert.isString(span.attributes["flowcore.time_bucket"])

        const saves = spansNamed("DataPump.saveCheckpoint")
        const last = saves[saves.length - 1]
        assert.deepStrictEqual(
          [last?.attributes["flowcore.time_bucket"], last?.attributes["flowcore.event_id"]],
          [bucket, slow.eventId]
        )
      }).pipe(Effect.provide(testLayers({ state: historyState })))
    )
  )

  it.effect("batch spans count the events, list their types, link each producer once and record the outcome", () =>
    atNow(
      Effect.gen(function* () {
        exporter.reset()
        const source = yield* InMemoryDataSource
        yield* source.append([
          { eventType: "created", at: BUCKET_START + 1000, metadata: { traceparent: `00-${TRACE_A}-${SPAN_A}-01` } },
          { eventType: "updated", at: BUCKET_START + 2000, metadata: { traceparent: `00-${TRACE_A}-${SPAN_A}-01` } },
          { eventType: "created", at: BUCKET_START + 3000, metadata: { traceparent: `00-${TRACE_B}-${SPAN_B}-01` } }
        ])
        let calls = 0
        const fiber = yield* DataPump.run({
          stopAt: new Date(NOW - HOUR),
          redelivery: { baseDelayMs: 100, maxDelayMs: 100 },
          processor: {
            concurrency: 3,
            handler: () => (++calls === 1 ? Effect.fail(new Error("first batch fails")) : Effect.void)
          }
        }).pipe(Effect.forkChild)
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(fiber)

        const [first, ...redelivered] = spansNamed("DataPump.handleBatch")
        assert.deepStrictEqual(
          [
            first?.attributes["flowcore.event_count"],
            first?.attributes["flowcore.event_types"],
            first?.attributes["flowcore.time_bucket"],
            first?.attributes["flowcore.delivery"],
            first?.attributes["flowcore.outcome"]
          ],
          [3, ["created", "updated"], bucket, 1, "failure"]
        )
        assert.deepStrictEqual(linksOf(first), [
          { traceId: TRACE_A, spanId: SPAN_A, traceFlags: 1 },
          { traceId: TRACE_B, spanId: SPAN_B, traceFlags: 1 }
        ])
        // Redeliveries re-open event by event (each with its own jittered delay), so they may come in smaller batches.
        assert.isAbove(redelivered.length, 0)
        let redeliveredEvents = 0
        const redeliveredLinks = new Set<string>()
        for (const span of redelivered) {
          assert.deepStrictEqual(
            [span.attributes["flowcore.delivery"], span.attributes["flowcore.outcome"]],
            [2, "success"]
          )
          redeliveredEvents += Number(span.attributes["flowcore.event_count"])
          for (const link of linksOf(span)) redeliveredLinks.add(`${link.traceId}-${link.spanId}`)
        }
        assert.strictEqual(redeliveredEvents, 3)
        assert.deepStrictEqual([...redeliveredLinks].sort(), [`${TRACE_A}-${SPAN_A}`, `${TRACE_B}-${SPAN_B}`].sort())
      }).pipe(Effect.provide(testLayers({ state: historyState })))
    )
  )

  it.effect("a sequential batch retried in place counts its deliveries up, one span per attempt", () =>
    atNow(
      Effect.gen(function* () {
        exporter.reset()
        const source = yield* InMemoryDataSource
        yield* source.append([
          { eventType: "created", at: BUCKET_START + 1000 },
          { eventType: "created", at: BUCKET_START + 2000 }
        ])
        let calls = 0
        const fiber = yield* DataPump.run({
          stopAt: new Date(NOW - HOUR),
          redelivery: { baseDelayMs: 100, maxDelayMs: 100 },
          processor: {
            concurrency: 2,
            sequential: true,
            // Retried in place means the same effect runs again, so the failure is decided when it runs.
            handler: () => Effect.suspend(() => (++calls <= 2 ? Effect.fail(new Error("not yet")) : Effect.void))
          }
        }).pipe(Effect.forkChild)
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(fiber)

        assert.deepStrictEqual(
          spansNamed("DataPump.handleBatch").map((span) => [
            span.attributes["flowcore.event_count"],
            span.attributes["flowcore.delivery"],
            span.attributes["flowcore.outcome"]
          ]),
          [
            [2, 1, "failure"],
            [2, 2, "failure"],
            [2, 3, "success"]
          ]
        )
      }).pipe(Effect.provide(testLayers({ state: historyState })))
    )
  )

  it.effect("live waits record the notifier, the timeout and why they woke", () =>
    atNow(
      Effect.gen(function* () {
        exporter.reset()
        const manual = yield* ManualNotifier
        const pump = yield* DataPump.make({ liveWaitTimeoutMs: 2000 })
        yield* pump.start
        yield* advanceUntil("the pump waits live", () => Effect.map(manual.waits, (n) => n >= 1))
        yield* manual.notify
        yield* advanceUntil("the pump waits again", () => Effect.map(manual.waits, (n) => n >= 2), { stepMs: 0 })
        yield* TestClock.adjust("2 seconds")
        yield* advanceUntil("the wait timed out", () =>
          Effect.sync(() =>
            spansNamed("DataPump.liveWait").some((span) => span.attributes["flowcore.wake_reason"] === "timeout")
          )
        )
        yield* pump.stop

        const waits = spansNamed("DataPump.liveWait")
        assert.deepStrictEqual(
          waits
            .slice(0, 2)
            .map((span) => [
              span.attributes["flowcore.notifier"],
              span.attributes["flowcore.timeout_ms"],
              span.attributes["flowcore.wake_reason"]
            ]),
          [
            ["manual", 2000, "notified"],
            ["manual", 2000, "timeout"]
          ]
        )
        const fetched = spansNamed("DataPump.fetchPage")
        assert.isTrue(fetched.length >= 2)
        for (const span of fetched) {
          assert.strictEqual(span.attributes["flowcore.event_count"], 0, "the live edge is empty")
          assert.strictEqual(span.attributes["flowcore.has_next_cursor"], false)
        }
      }).pipe(Effect.scoped, Effect.provide(testLayers({})))
    )
  )
})

describe("parseTraceparent", () => {
  const valid = `00-${TRACE_A}-${SPAN_A}-01`

  it("reads trace id, span id and the sampled flag", () => {
    const span = parseTraceparent(valid)
    assert.deepStrictEqual([span?.traceId, span?.spanId, span?.sampled], [TRACE_A, SPAN_A, true])
    assert.strictEqual(parseTraceparent(`00-${TRACE_A}-${SPAN_A}-00`)?.sampled, false)
    assert.strictEqual(parseTraceparent(`00-${TRACE_A}-${SPAN_A}-03`)?.sampled, true)
  })

  it("ignores everything that is not a valid version-00 traceparent", () => {
    const invalid: ReadonlyArray<unknown> = [
      undefined,
      null,
      42,
      { traceId: TRACE_A },
      "",
      valid.toUpperCase(),
      ` ${valid}`,
      `${valid}-extra`,
      `01-${TRACE_A}-${SPAN_A}-01`,
      `ff-${TRACE_A}-${SPAN_A}-01`,
      `00-${"0".repeat(32)}-${SPAN_A}-01`,
      `00-${TRACE_A}-${"0".repeat(16)}-01`,
      `00-${TRACE_A.slice(1)}-${SPAN_A}-01`,
      `00-${TRACE_A}-${SPAN_A}1-01`,
      `00-${TRACE_A}-${SPAN_A}-1`,
      `00-${TRACE_A}-${SPAN_A}-0g`,
      `00_${TRACE_A}_${SPAN_A}_01`
    ]
    for (const value of invalid) assert.isUndefined(parseTraceparent(value), JSON.stringify(value))
  })
})
