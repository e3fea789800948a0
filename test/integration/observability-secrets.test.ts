/**
 * Guarantee 10: credentials never leave the pump. Pumps with an API key and with a bearer token run against the
 * emulator behind a proxy that provokes every error path we know: a gateway echoing the Authorization header in a
 * 401, HTTP 500s, a refused WebSocket, a throwing handler and a pump started with wrong credentials. Every log line
 * and its metadata (debug included), every error, every span and the Prometheus scrape are searched for the secret.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, layer } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { flowcoreLayer, loggingLayer } from "../../src/compat/layers.ts"
import type { FlowcoreDataPumpAuth } from "../../src/compat/options.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import type { Emulator } from "../../src/emulator/index.ts"
import { dataPumpPromRegistry, FlowcoreDataPump, type FlowcoreEvent } from "../../src/index.ts"
import { MemoryStateStore } from "../../src/layers/stateStore/Memory.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import {
  API_KEY,
  API_KEY_ID,
  API_SECRET,
  acquireCredentialProxy,
  acquireEmulator,
  assertNoSecrets,
  BEARER_TOKEN,
  type CredentialProxy,
  captureLogger,
  HOUR,
  type LogLine,
  logLineText,
  SOURCE,
  seed,
  spanText,
  waitFor
} from "./observability-support.ts"

const exporter = new InMemorySpanExporter()
const Tracing = NodeSdk.layer(() => ({
  resource: { serviceName: "test" },
  spanProcessor: new SimpleSpanProcessor(exporter)
}))

interface Credentials {
  readonly name: string
  readonly auth: FlowcoreDataPumpAuth
  readonly wrongAuth: FlowcoreDataPumpAuth
  /** What must never appear; the wrong credentials contain these too. */
  readonly secrets: ReadonlyArray<string>
}

const credentials: ReadonlyArray<Credentials> = [
  {
    name: "an API key",
    auth: { apiKey: API_KEY },
    wrongAuth: { apiKey: `fc_${API_KEY_ID}_wrong${API_SECRET}` },
    secrets: [API_SECRET]
  },
  {
    name: "a bearer token",
    auth: { getBearerToken: async () => BEARER_TOKEN },
    wrongAuth: { getBearerToken: () => `wrong${BEARER_TOKEN}` },
    secrets: [BEARER_TOKEN]
  }
]

/** The event whose handler always throws. */
const POISON = 1

const handledNumbers = (events: ReadonlyArray<FlowcoreEvent>, handled: Set<number>) => {
  if (events.some((event) => event.payload.n === POISON)) throw new Error("handler refused the event")
  for (const event of events) handled.add(Number(event.payload.n))
}

const requestsTo = (emulator: Emulator, path: string) => emulator.stats.byPath[path] ?? 0

/**
 * Walks a running pump through every failure: the test sees each one take effect in the logs before moving on, so
 * none of them is skipped by timing.
 */
const provokeFailures = async (
  emulator: Emulator,
  proxy: CredentialProxy,
  lines: Array<LogLine>,
  handled: Set<number>,
  isLive: () => Promise<boolean>
) => {
  const count = (level: LogLine["level"], text: string) =>
    lines.filter((line) => line.level === level && line.message.includes(text)).length
  const ingestLive = (n: number) => emulator.ingest({ ...SOURCE, eventType: SOURCE.eventTypes[0], payload: { n } })

  await waitFor("the history is handled", () => [0, 2, 3].every((n) => handled.has(n)))
  await waitFor("the poison event finally failed", () => count("warn", "Events finally failed") === 1)
  await waitFor("the WebSocket is connected", () => count("debug", "websocket notifier connected") === 1)
  await waitFor("the pump is live", isLive)

  proxy.data = "echo-401"
  ingestLive(100)
  await waitFor("the echoed 401 is logged", () => count("warn", "Fetching events failed") === 1)
  proxy.data = "forward"
  await waitFor("fetching recovers", () => count("info", "Fetching events recovered") === 1 && handled.has(100))

  const eventRequests = requestsTo(emulator, "/api/v1/events")
  emulator.setFaults({ errorRate: 1, errorStatus: 500 })
  ingestLive(101)
  await waitFor("two requests got a 500", () => requestsTo(emulator, "/api/v1/events") >= eventRequests + 2)
  emulator.setFaults({ errorRate: 0 })
  await waitFor("the event behind the 500s is handled", () => handled.has(101))

  proxy.webSocket = "wrong-credentials"
  emulator.dropWebSockets()
  await waitFor("the outage is logged", () => count("warn", "websocket notifier is not connected") === 1)
  await waitFor("a reconnect is refused", () =>
    lines.some((line) => line.level === "debug" && /still not connected.*401/.test(line.message))
  )
  proxy.webSocket = "forward"
  await waitFor("the WebSocket reconnects", () => count("info", "websocket notifier connected again") === 1)
}

const startState = () => ({ timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR) })

/** The checks shared by both runs: nothing in the logs, and the logs prove the failures happened. */
const assertLogsClean = (lines: ReadonlyArray<LogLine>, secrets: ReadonlyArray<string>) => {
  assert.isTrue(
    lines.some((line) => line.level === "warn" && logLineText(line).includes("<redacted>")),
    "the echoed credential was seen, and scrubbed"
  )
  const checked = assertNoSecrets(
    lines.map((line, i) => [`log line ${i} (${line.level}: ${line.message})`, logLineText(line)] as const),
    secrets
  )
  assert.strictEqual(checked, lines.length)
}

layer(Tracing, { excludeTestServices: true })("observability: secrets stay secret", (it) => {
  for (const credential of credentials) {
    it.effect(`facade with ${credential.name}: no secret in logs, errors or metrics`, () =>
      Effect.gen(function* () {
        const emulator = yield* acquireEmulator()
        const proxy = yield* acquireCredentialProxy(emulator)
        seed(emulator, 4, 2)
        const { lines, logger } = captureLogger()
        const handled = new Set<number>()
        const errors: Array<unknown> = []
        let state: { timeBucket: string; eventId?: string } | null = startState()
        const options = {
          dataSource: SOURCE,
          baseUrlOverride: proxy.url,
          logger,
          maxRedeliveryCount: 1,
          stateManager: {
            getState: () => state,
            setState: (next: { timeBucket: string; eventId?: string }) => {
              state = next
            }
          },
          processor: { handler: (events: Array<FlowcoreEvent>) => handledNumbers(events, handled) }
        }
        const pump = FlowcoreDataPump.create({ ...options, auth: credential.auth })
        yield* Effect.promise(async () => {
          await pump.start((error) => {
            if (error !== undefined) errors.push(error)
          })
          try {
            await provokeFailures(emulator, proxy, lines, handled, async () => (await pump.snapshot())?.live === true)
            proxy.data = "echo-401"
            errors.push(await pump.dataSource.getTenantId().catch((error: unknown) => error))
            proxy.data = "forward"
          } finally {
            await pump.stop()
          }
        })

        const wrong = FlowcoreDataPump.create({ ...options, auth: credential.wrongAuth })
        const refused = yield* Effect.promise(() =>
          wrong.start().then(
            () => wrong.stop(),
            (error: unknown) => error
          )
        )
        assert.instanceOf(refused, Error, "starting with wrong credentials fails")
        assert.include(String((refused as Error).message), "401")
        errors.push(refused)
        yield* Effect.promise(() => wrong.stop())

        assert.instanceOf(errors[0], Error, "the gateway's 401 reached the caller of getTenantId")
        assertLogsClean(lines, credential.secrets)
        assertNoSecrets(
          errors.map(
            (error, i) =>
              [`error ${i}`, `${String(error)}\n${(error as Error).stack}\n${JSON.stringify(error)}`] as const
          ),
          credential.secrets
        )
        const scrape = yield* Effect.promise(() => dataPumpPromRegistry.metrics())
        assert.include(scrape, 'flow_type="orders.0"', "the scrape has this pump's series")
        assertNoSecrets([["prometheus scrape", scrape]], credential.secrets)
      })
    )

    it.effect(`Effect API with ${credential.name}: no secret in spans or logs`, () =>
      Effect.gen(function* () {
        exporter.reset()
        const emulator = yield* acquireEmulator()
        const proxy = yield* acquireCredentialProxy(emulator)
        seed(emulator, 4, 2)
        const { lines, logger } = captureLogger()
        const handled = new Set<number>()
        const services = Layer.mergeAll(
          flowcoreLayer({ auth: credential.auth, dataSource: SOURCE, baseUrlOverride: proxy.url }),
          MemoryStateStore.layer(startState())
        ).pipe(Layer.provideMerge(loggingLayer(logger)))
        const context = yield* Layer.build(services)
        const pump = yield* DataPump.make({
          maxRedeliveryCount: 1,
          processor: {
            handler: (events) => Effect.try({ try: () => handledNumbers(events, handled), catch: (error) => error })
          }
        }).pipe(Effect.provideContext(context))
        yield* pump.start
        const isLive = () => Effect.runPromise(Effect.map(pump.snapshot, (snapshot) => snapshot.live))
        yield* Effect.promise(() => provokeFailures(emulator, proxy, lines, handled, isLive))
        yield* pump.stop

        assertLogsClean(lines, credential.secrets)
        const spans = exporter.getFinishedSpans()
        assert.isTrue(
          spans.some((span) => span.name === "GET" && span.attributes["http.response.status_code"] === 401),
          "the echoed 401 is traced"
        )
        assert.isTrue(
          spans.some((span) => span.name === "WebSocketNotifier.connect" && span.status.code === 2),
          "the refused WebSocket attempt is traced"
        )
        assert.isTrue(spans.some((span) => span.name === "DataPump.handleBatch" && span.status.code === 2))
        const checked = assertNoSecrets(
          spans.map((span) => [span.name, spanText(span)] as const),
          credential.secrets
        )
        assert.isAbove(checked, 20)
      })
    )
  }
})
