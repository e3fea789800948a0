/**
 * The span tree of a real run: the pump against the emulator over HTTP and WebSocket, exported by the OpenTelemetry
 * SDK to an in-memory exporter. Also the notifiers' connect spans (one per attempt) for WebSocket and NATS; the NATS
 * test needs the server on 127.0.0.1:4222 and fails without it.
 */
import { createServer } from "node:net"
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, layer } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { flowcoreLayer, flowcoreSourceLayer, makeConnection } from "../../src/compat/layers.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { NatsNotifier } from "../../src/layers/notifier/Nats.ts"
import { WebSocketNotifier } from "../../src/layers/notifier/WebSocket.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { Notifier } from "../../src/services/Notifier.ts"
import { PumpMetrics } from "../../src/services/PumpMetrics.ts"
import {
  API_KEY,
  API_KEY_ID,
  API_SECRET,
  acquireEmulator,
  assertNoSecrets,
  eventually,
  HOUR,
  SOURCE,
  seed,
  spanText
} from "./observability-support.ts"

const exporter = new InMemorySpanExporter()
const Tracing = NodeSdk.layer(() => ({
  resource: { serviceName: "test" },
  spanProcessor: new SimpleSpanProcessor(exporter)
}))

const PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const PRODUCER_SPAN = "00f067aa0ba902b7"

const finished = (name: string): Array<ReadableSpan> => exporter.getFinishedSpans().filter((span) => span.name === name)

const childrenOf = (parent: ReadableSpan | undefined, name: string): Array<ReadableSpan> =>
  finished(name).filter(
    (span) => parent !== undefined && span.parentSpanContext?.spanId === parent.spanContext().spanId
  )

const freePort = Effect.promise(
  () =>
    new Promise<number>((resolve) => {
      const server = createServer()
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
      })
    })
)

const noSecretInAnySpan = (secrets: ReadonlyArray<string>) =>
  assertNoSecrets(
    exporter.getFinishedSpans().map((span) => [span.name, spanText(span)] as const),
    secrets
  )

layer(Tracing, { excludeTestServices: true })("observability: spans of a run against the emulator", (it) => {
  it.effect(
    "fetch, HTTP, handler, checkpoint and connect spans form the expected tree, with the traceparent link and no secret",
    () =>
      Effect.gen(function* () {
        exporter.reset()
        const emulator = yield* acquireEmulator()
        const ids = seed(emulator, 6, 2, (i) =>
          i === 1 ? { traceparent: `00-${PRODUCER_TRACE}-${PRODUCER_SPAN}-01` } : undefined
        )
        const bucket = TimeBucket.fromDate(Date.now() - 2 * HOUR)
        const services = Layer.mergeAll(
          flowcoreLayer({ auth: { apiKey: API_KEY }, dataSource: SOURCE, baseUrlOverride: emulator.url }),
          MemoryStateStore.layer({ timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR) })
        )
        yield* Effect.gen(function* () {
          const pump = yield* DataPump.make({
            redelivery: { baseDelayMs: 50, maxDelayMs: 50 },
            processor: {
              handleEvent: (event, { attempt }) =>
                event.eventId === ids[2] && attempt === 1 ? Effect.fail(new Error("first delivery fails")) : Effect.void
            }
          })
          yield* pump.start
          for (let polls = 0; ; polls++) {
            const snapshot = yield* pump.snapshot
            if (snapshot.counters.acknowledged === 6 && finished("WebSocketNotifier.connect").length > 0) break
            if (polls > 750) return yield* Effect.die(new Error("timed out waiting for the run"))
            yield* Effect.sleep("20 millis")
          }
          yield* pump.stop
        }).pipe(Effect.scoped, Effect.provide(services))

        // DataPump.fetchPage > FlowcoreHttp.fetchPage > the HTTP client span
        const pageSpans = finished("DataPump.fetchPage")
        const withEvents = pageSpans.filter((span) => Number(span.attributes["flowcore.event_count"]) > 0)
        assert.strictEqual(withEvents.length, 1, "one page holds the six events")
        const pageSpan = withEvents[0]
        assert.deepStrictEqual(
          [
            pageSpan?.attributes["flowcore.time_bucket"],
            pageSpan?.attributes["flowcore.event_count"],
            pageSpan?.attributes["flowcore.flow_type"]
          ],
          [bucket, 6, SOURCE.flowType]
        )
        const [sourceSpan, ...moreSourceSpans] = childrenOf(pageSpan, "FlowcoreHttp.fetchPage")
        assert.strictEqual(moreSourceSpans.length, 0)
        assert.deepStrictEqual(
          [
            sourceSpan?.attributes["flowcore.flow_type"],
            sourceSpan?.attributes["flowcore.time_bucket"],
            sourceSpan?.attributes["flowcore.event_count"]
          ],
          [SOURCE.flowType, bucket, 6]
        )
        const [httpSpan] = childrenOf(sourceSpan, "GET")
        assert.strictEqual(httpSpan?.attributes["http.request.method"], "GET")
        assert.strictEqual(httpSpan?.attributes["http.response.status_code"], 200)
        assert.include(String(httpSpan?.attributes["url.full"]), "/api/v1/events")
        for (const span of pageSpans) {
          assert.strictEqual(childrenOf(span, "FlowcoreHttp.fetchPage").length, 1, "every page is one source call")
        }

        // Handler spans: type, bucket, delivery, outcome, and the link to the producer.
        const handled = finished("DataPump.handleEvent")
        const byEvent = (id: string | undefined) =>
          handled
            .filter((span) => span.attributes["flowcore.event_id"] === id)
            .map((span) => [span.attributes["flowcore.delivery"], span.attributes["flowcore.outcome"]])
        assert.strictEqual(handled.length, 7)
        assert.deepStrictEqual(byEvent(ids[0]), [[1, "success"]])
        assert.deepStrictEqual(byEvent(ids[2]), [
          [1, "failure"],
          [2, "success"]
        ])
        const linked = handled.find((span) => span.attributes["flowcore.event_id"] === ids[1])
        assert.deepStrictEqual(
          linked?.links.map((link) => [link.context.traceId, link.context.spanId]),
          [[PRODUCER_TRACE, PRODUCER_SPAN]]
        )
        assert.deepStrictEqual(
          [linked?.attributes["flowcore.event_type"], linked?.attributes["flowcore.time_bucket"]],
          [SOURCE.eventTypes[1], bucket]
        )
        for (const span of handled) {
          if (span.attributes["flowcore.event_id"] !== ids[1]) assert.deepStrictEqual(span.links, [])
        }

        const saves = finished("DataPump.saveCheckpoint")
        assert.deepStrictEqual(
          [saves.at(-1)?.attributes["flowcore.time_bucket"], saves.at(-1)?.attributes["flowcore.event_id"]],
          [bucket, ids[5]]
        )
        assert.isTrue(finished("DataPump.liveWait").length > 0, "the pump went live and waited")

        const [connect] = finished("WebSocketNotifier.connect")
        assert.deepStrictEqual(
          [
            connect?.attributes["flowcore.notifier"],
            connect?.attributes["flowcore.connect_attempt"],
            connect?.attributes["url.full"],
            connect?.status.code
          ],
          ["websocket", 1, `${emulator.url.replace("http:", "ws:")}/notifications`, 1]
        )

        const checked = noSecretInAnySpan([API_SECRET, API_KEY])
        assert.isAbove(checked, 20)
      })
  )

  it.effect("a page read ahead has its own span under what started it, and no page is requested twice", () =>
    Effect.gen(function* () {
      exporter.reset()
      const emulator = yield* acquireEmulator()
      seed(emulator, 6, 2)
      const services = Layer.mergeAll(
        flowcoreLayer({ auth: { apiKey: API_KEY }, dataSource: SOURCE, baseUrlOverride: emulator.url }),
        MemoryStateStore.layer({ timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR) })
      )
      yield* Effect.gen(function* () {
        // Pages of 2 in a buffer of 10: room for another page beside each one.
        const pump = yield* DataPump.make({
          bufferSize: 10,
          maxPageSize: 2,
          processor: { handleEvent: () => Effect.void }
        })
        yield* pump.start
        for (let polls = 0; ; polls++) {
          if ((yield* pump.snapshot).counters.acknowledged === 6) break
          if (polls > 750) return yield* Effect.die(new Error("timed out waiting for the run"))
          yield* Effect.sleep("20 millis")
        }
        yield* pump.stop
      }).pipe(Effect.scoped, Effect.provide(services))

      const readAheads = finished("FlowcoreHttp.readAhead")
      assert.isAtLeast(readAheads.length, 2, "pages 2 and 3 of the bucket were read ahead")
      const sourceCalls = finished("FlowcoreHttp.fetchPage")
      for (const span of readAheads) {
        assert.strictEqual(span.attributes["flowcore.page_size"], 2)
        // Started by a source call, or by the read-ahead before it once that one was in (two pages ahead).
        const parent = [...sourceCalls, ...readAheads].find(
          (call) => call.spanContext().spanId === span.parentSpanContext?.spanId
        )
        assert.isDefined(parent, "started by a source call or the read-ahead before it")
        assert.strictEqual(childrenOf(span, "GET").length, 1)
      }
      // Every page of the bucket was requested once: the read-aheads were used, not repeated.
      const eventRequests = finished("GET")
        .map((span) => new URL(String(span.attributes["url.full"])))
        .filter((url) => url.pathname === "/api/v1/events" && url.searchParams.has("cursor"))
        .map((url) => url.searchParams.get("cursor"))
      assert.strictEqual(new Set(eventRequests).size, eventRequests.length)
    })
  )

  it.effect("a WebSocket notifier that is refused makes one failed connect span per attempt, without the key", () =>
    Effect.gen(function* () {
      exporter.reset()
      const emulator = yield* acquireEmulator()
      seed(emulator, 2, 1)
      const wrongSecret = `wrong${API_SECRET}`
      const good = yield* makeConnection({
        auth: { apiKey: API_KEY },
        dataSource: SOURCE,
        baseUrlOverride: emulator.url
      })
      const wrong = yield* makeConnection({
        auth: { apiKey: `fc_${API_KEY_ID}_${wrongSecret}` },
        dataSource: SOURCE,
        baseUrlOverride: emulator.url
      })
      const notifier = WebSocketNotifier.layer({
        connection: wrong,
        reconnect: { baseDelayMs: 20, maxDelayMs: 40 }
      }).pipe(Layer.provide(flowcoreSourceLayer(good)))
      yield* Effect.gen(function* () {
        yield* Notifier
        yield* eventually("three refused attempts", () => finished("WebSocketNotifier.connect").length >= 3)
      }).pipe(Effect.scoped, Effect.provide(notifier))

      const attempts = finished("WebSocketNotifier.connect")
      assert.deepStrictEqual(
        attempts.slice(0, 3).map((span) => span.attributes["flowcore.connect_attempt"]),
        [1, 2, 3]
      )
      for (const span of attempts) {
        assert.strictEqual(span.status.code, 2, "a refused attempt ends its span with status ERROR")
        assert.include(String(span.status.message), "401")
      }
      noSecretInAnySpan([wrongSecret, API_SECRET])
    })
  )

  it.effect("NATS: a connect span per attempt, failed attempts marked as errors and credentials left out", () =>
    Effect.gen(function* () {
      exporter.reset()
      const deadPort = yield* freePort
      const source = InMemoryDataSource.layer({ flowType: SOURCE.flowType, eventTypes: SOURCE.eventTypes })
      const connected = NatsNotifier.layer({ servers: "nats://127.0.0.1:4222" }).pipe(
        Layer.provide(Layer.merge(source, PumpMetrics.none))
      )
      yield* Effect.gen(function* () {
        yield* Notifier
        yield* eventually("the NATS connect span", () => finished("NatsNotifier.connect").length > 0)
      }).pipe(Effect.scoped, Effect.provide(connected))
      const [ok] = finished("NatsNotifier.connect")
      assert.deepStrictEqual(
        [
          ok?.attributes["flowcore.notifier"],
          ok?.attributes["flowcore.connect_attempt"],
          ok?.attributes["server.address"],
          ok?.status.code
        ],
        ["nats", 1, "nats://127.0.0.1:4222", 1]
      )

      exporter.reset()
      const refused = NatsNotifier.layer({
        servers: `nats://watcher:hunter2secret@127.0.0.1:${deadPort}`,
        connectTimeoutMs: 500
      }).pipe(Layer.provide(Layer.merge(source, PumpMetrics.none)))
      yield* Effect.gen(function* () {
        yield* Notifier
        yield* eventually("two refused NATS attempts", () => finished("NatsNotifier.connect").length >= 2)
      }).pipe(Effect.scoped, Effect.provide(refused))
      const failed = finished("NatsNotifier.connect")
      assert.deepStrictEqual(
        failed.slice(0, 2).map((span) => [span.attributes["flowcore.connect_attempt"], span.status.code]),
        [
          [1, 2],
          [2, 2]
        ]
      )
      assert.strictEqual(failed[0]?.attributes["server.address"], `nats://127.0.0.1:${deadPort}`)
      noSecretInAnySpan(["hunter2secret"])
    })
  )
})
