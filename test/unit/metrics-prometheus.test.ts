import { describe, expect, it, vi } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { Gauge, Registry } from "prom-client"
import { registerMetricFamilies } from "../../src/layers/metrics/MetricFamilies.ts"
import { dataPumpPromRegistry, type PrometheusLabels, PrometheusMetrics } from "../../src/layers/metrics/Prometheus.ts"
import { PumpMetrics, type PumpMetricsRecorder } from "../../src/services/PumpMetrics.ts"

const readmeMetricNames = [
  "flowcore_data_pump_buffer_events_gauge",
  "flowcore_data_pump_buffer_reserved_events_gauge",
  "flowcore_data_pump_buffer_size_bytes_gauge",
  "flowcore_data_pump_events_acknowledged_counter",
  "flowcore_data_pump_events_failed_counter",
  "flowcore_data_pump_events_pulled_size_bytes_counter",
  "flowcore_data_pump_sdk_commands_counter"
]

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

interface Scrape {
  readonly types: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<Sample>
}

const unescapeLabel = (raw: string): string => raw.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))

/** Parses the Prometheus text exposition format the way a scraper would. */
const parseScrape = (text: string): Scrape => {
  const types = new Map<string, string>()
  const samples: Array<Sample> = []
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type?.[1] !== undefined && type[2] !== undefined) {
      types.set(type[1], type[2])
      continue
    }
    if (line === "" || line.startsWith("#")) continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (sample?.[1] === undefined || sample[3] === undefined) throw new Error(`unparseable scrape line: ${line}`)
    const labels: Record<string, string> = {}
    for (const pair of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      if (pair[1] !== undefined && pair[2] !== undefined) labels[pair[1]] = unescapeLabel(pair[2])
    }
    samples.push({ name: sample[1], labels, value: Number(sample[3]) })
  }
  return { types, samples }
}

const scrape = Effect.promise(() => dataPumpPromRegistry.metrics()).pipe(Effect.map(parseScrape))

/** The value of the one sample with exactly these labels, or undefined when the series does not exist. */
const sampleValue = (s: Scrape, name: string, labels: Readonly<Record<string, string>>): number | undefined => {
  const wanted = Object.entries(labels)
  const matches = s.samples.filter(
    (sample) =>
      sample.name === name &&
      Object.keys(sample.labels).length === wanted.length &&
      wanted.every(([k, v]) => sample.labels[k] === v)
  )
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return matches[0]?.value
}

let labelCounter = 0
/** Every test gets its own label set because the registry is shared by the whole process. */
const freshLabels = (): PrometheusLabels => {
  labelCounter++
  return { tenant: `tenant-${labelCounter}`, dataCore: `core "${labelCounter}"`, flowType: `flow.${labelCounter}` }
}

const baseOf = (l: PrometheusLabels) => ({ tenant: l.tenant, data_core: l.dataCore, flow_type: l.flowType })
const eventLabels = (l: PrometheusLabels, eventType: string) => ({ ...baseOf(l), event_type: eventType })

/** Builds a recorder in its own scope so the test decides when its layer is released. */
const openRecorder = (layer: Layer.Layer<PumpMetrics>) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope)
    return { recorder: Context.get(context, PumpMetrics), release: Scope.close(scope, Exit.void) }
  })

const driveKnownWorkload = (m: PumpMetricsRecorder): void => {
  m.commandSent("TimeBucketList")
  for (let i = 0; i < 3; i++) m.commandSent("EventList")
  m.pulled("order.created", 6, 600)
  m.pulled("order.created", 4, 400)
  m.pulled("order.paid", 3, 90)
  m.buffered("order.created", 10, 1_000)
  m.buffered("order.paid", 3, 90)
  m.reserved("order.created", 5)
  m.reserved("order.paid", 2)
  // three acknowledged, one finally failed after two redeliveries; each leaves the buffer
  m.acknowledged("order.created", 3)
  m.redelivered("order.created", 2)
  m.failed("order.created", 1)
  m.reserved("order.created", -4)
  m.buffered("order.created", -4, -400)
  for (let i = 0; i < 3; i++) m.handlerDuration(0.02, "success")
  m.handlerDuration(1.5, "failure")
  m.handlerDuration(45, "timeout")
  m.fetchDuration(0.25)
  m.fetchDuration(0.5)
  m.lag(12.5)
  m.notifierReconnected()
  m.notifierReconnected()
  for (let i = 0; i < 4; i++) m.checkpointSaved()
  m.checkpointSaveFailed()
}

describe("PrometheusMetrics", () => {
  it.effect("a scrape shows exactly the recorded workload with the pump's labels", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      const base = baseOf(labels)
      const created = eventLabels(labels, "order.created")
      const paid = eventLabels(labels, "order.paid")
      const { recorder, release } = yield* openRecorder(PrometheusMetrics.layer(labels))
      driveKnownWorkload(recorder)
      const s = yield* scrape

      for (const name of readmeMetricNames) expect(s.types.has(name), name).toBe(true)
      expect(s.types.get("flowcore_data_pump_buffer_events_gauge")).toBe("gauge")
      expect(s.types.get("flowcore_data_pump_events_acknowledged_counter")).toBe("counter")
      expect(s.types.get("flowcore_data_pump_handler_duration_seconds")).toBe("histogram")

      expect(sampleValue(s, "flowcore_data_pump_buffer_events_gauge", created)).toBe(6)
      expect(sampleValue(s, "flowcore_data_pump_buffer_events_gauge", paid)).toBe(3)
      expect(sampleValue(s, "flowcore_data_pump_buffer_reserved_events_gauge", created)).toBe(1)
      expect(sampleValue(s, "flowcore_data_pump_buffer_reserved_events_gauge", paid)).toBe(2)
      expect(sampleValue(s, "flowcore_data_pump_buffer_size_bytes_gauge", created)).toBe(600)
      expect(sampleValue(s, "flowcore_data_pump_buffer_size_bytes_gauge", paid)).toBe(90)
      expect(sampleValue(s, "flowcore_data_pump_events_acknowledged_counter", created)).toBe(3)
      expect(sampleValue(s, "flowcore_data_pump_events_acknowledged_counter", paid)).toBeUndefined()
      expect(sampleValue(s, "flowcore_data_pump_events_failed_counter", created)).toBe(1)
      expect(sampleValue(s, "flowcore_data_pump_events_redelivered_counter", created)).toBe(2)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", created)).toBe(10)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", paid)).toBe(3)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_size_bytes_counter", created)).toBe(1_000)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_size_bytes_counter", paid)).toBe(90)
      expect(sampleValue(s, "flowcore_data_pump_sdk_commands_counter", { ...base, command: "EventList" })).toBe(3)
      expect(sampleValue(s, "flowcore_data_pump_sdk_commands_counter", { ...base, command: "TimeBucketList" })).toBe(1)

      const handler = "flowcore_data_pump_handler_duration_seconds"
      expect(sampleValue(s, `${handler}_count`, { ...base, outcome: "success" })).toBe(3)
      expect(sampleValue(s, `${handler}_count`, { ...base, outcome: "failure" })).toBe(1)
      expect(sampleValue(s, `${handler}_count`, { ...base, outcome: "timeout" })).toBe(1)
      expect(sampleValue(s, `${handler}_bucket`, { ...base, outcome: "success", le: "0.025" })).toBe(3)
      expect(sampleValue(s, `${handler}_bucket`, { ...base, outcome: "success", le: "0.01" })).toBe(0)
      expect(sampleValue(s, `${handler}_bucket`, { ...base, outcome: "timeout", le: "30" })).toBe(0)
      expect(sampleValue(s, `${handler}_bucket`, { ...base, outcome: "timeout", le: "60" })).toBe(1)
      expect(sampleValue(s, `${handler}_sum`, { ...base, outcome: "failure" })).toBe(1.5)
      expect(sampleValue(s, "flowcore_data_pump_fetch_page_duration_seconds_count", base)).toBe(2)
      expect(sampleValue(s, "flowcore_data_pump_fetch_page_duration_seconds_sum", base)).toBe(0.75)

      expect(sampleValue(s, "flowcore_data_pump_lag_seconds_gauge", base)).toBe(12.5)
      expect(sampleValue(s, "flowcore_data_pump_live_gauge", base)).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_notifier_reconnects_counter", base)).toBe(2)
      expect(sampleValue(s, "flowcore_data_pump_checkpoint_saves_counter", base)).toBe(4)
      expect(sampleValue(s, "flowcore_data_pump_checkpoint_save_failures_counter", base)).toBe(1)

      recorder.live(true)
      recorder.lag(0)
      const liveScrape = yield* scrape
      expect(sampleValue(liveScrape, "flowcore_data_pump_live_gauge", base)).toBe(1)
      expect(sampleValue(liveScrape, "flowcore_data_pump_lag_seconds_gauge", base)).toBe(0)
      yield* release
    })
  )

  it.effect("releasing a layer zeroes its gauges and keeps its counters", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      const base = baseOf(labels)
      const created = eventLabels(labels, "order.created")
      const { recorder, release } = yield* openRecorder(PrometheusMetrics.layer(labels))
      driveKnownWorkload(recorder)
      recorder.live(true)
      yield* release

      const s = yield* scrape
      expect(sampleValue(s, "flowcore_data_pump_buffer_events_gauge", created)).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_buffer_events_gauge", eventLabels(labels, "order.paid"))).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_buffer_reserved_events_gauge", created)).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_buffer_size_bytes_gauge", created)).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_lag_seconds_gauge", base)).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_live_gauge", base)).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_events_acknowledged_counter", created)).toBe(3)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", created)).toBe(10)
      expect(sampleValue(s, "flowcore_data_pump_sdk_commands_counter", { ...base, command: "EventList" })).toBe(3)

      // a call arriving after release (a late fiber) must not bring the stale buffer back
      recorder.buffered("order.created", 5, 500)
      recorder.live(true)
      const late = yield* scrape
      expect(sampleValue(late, "flowcore_data_pump_buffer_events_gauge", created)).toBe(0)
      expect(sampleValue(late, "flowcore_data_pump_live_gauge", base)).toBe(0)
    })
  )

  it.effect("Effect.provide releases the layer when the program ends", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      const created = eventLabels(labels, "order.created")
      const during = yield* Effect.gen(function* () {
        const m = yield* PumpMetrics
        m.buffered("order.created", 7, 70)
        m.reserved("order.created", 2)
        return yield* scrape
      }).pipe(Effect.provide(PrometheusMetrics.layer(labels)))
      expect(sampleValue(during, "flowcore_data_pump_buffer_events_gauge", created)).toBe(7)
      const after = yield* scrape
      expect(sampleValue(after, "flowcore_data_pump_buffer_events_gauge", created)).toBe(0)
      expect(sampleValue(after, "flowcore_data_pump_buffer_reserved_events_gauge", created)).toBe(0)
      expect(sampleValue(after, "flowcore_data_pump_buffer_size_bytes_gauge", created)).toBe(0)
    })
  )

  it.effect("two layers with different labels do not mix", () =>
    Effect.gen(function* () {
      const first = freshLabels()
      const second = freshLabels()
      const a = yield* openRecorder(PrometheusMetrics.layer(first))
      const b = yield* openRecorder(PrometheusMetrics.layer(second))
      a.recorder.pulled("same.type", 4, 40)
      a.recorder.buffered("same.type", 4, 40)
      a.recorder.commandSent("EventList")
      a.recorder.lag(100)
      b.recorder.pulled("same.type", 7, 700)
      b.recorder.buffered("same.type", 7, 700)
      b.recorder.live(true)
      b.recorder.checkpointSaved()

      const s = yield* scrape
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", eventLabels(first, "same.type"))).toBe(4)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", eventLabels(second, "same.type"))).toBe(7)
      expect(sampleValue(s, "flowcore_data_pump_buffer_size_bytes_gauge", eventLabels(first, "same.type"))).toBe(40)
      expect(sampleValue(s, "flowcore_data_pump_buffer_size_bytes_gauge", eventLabels(second, "same.type"))).toBe(700)
      expect(
        sampleValue(s, "flowcore_data_pump_sdk_commands_counter", { ...baseOf(first), command: "EventList" })
      ).toBe(1)
      expect(
        sampleValue(s, "flowcore_data_pump_sdk_commands_counter", { ...baseOf(second), command: "EventList" })
      ).toBe(undefined)
      expect(sampleValue(s, "flowcore_data_pump_lag_seconds_gauge", baseOf(first))).toBe(100)
      expect(sampleValue(s, "flowcore_data_pump_lag_seconds_gauge", baseOf(second))).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_live_gauge", baseOf(first))).toBe(0)
      expect(sampleValue(s, "flowcore_data_pump_live_gauge", baseOf(second))).toBe(1)
      expect(sampleValue(s, "flowcore_data_pump_checkpoint_saves_counter", baseOf(first))).toBeUndefined()
      expect(sampleValue(s, "flowcore_data_pump_checkpoint_saves_counter", baseOf(second))).toBe(1)

      yield* a.release
      const afterA = yield* scrape
      expect(sampleValue(afterA, "flowcore_data_pump_buffer_events_gauge", eventLabels(first, "same.type"))).toBe(0)
      expect(sampleValue(afterA, "flowcore_data_pump_buffer_events_gauge", eventLabels(second, "same.type"))).toBe(7)
      yield* b.release
    })
  )

  it.effect("the same labels built twice share the series without throwing, each keeping its own share", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      const base = baseOf(labels)
      const created = eventLabels(labels, "order.created")
      const layer = PrometheusMetrics.layer(labels)
      const a = yield* openRecorder(layer)
      const b = yield* openRecorder(PrometheusMetrics.layer(labels))
      a.recorder.buffered("order.created", 5, 50)
      a.recorder.acknowledged("order.created", 2)
      a.recorder.lag(30)
      a.recorder.live(true)
      b.recorder.buffered("order.created", 2, 20)
      b.recorder.acknowledged("order.created", 1)
      b.recorder.lag(5)

      const both = yield* scrape
      expect(sampleValue(both, "flowcore_data_pump_buffer_events_gauge", created)).toBe(7)
      expect(sampleValue(both, "flowcore_data_pump_events_acknowledged_counter", created)).toBe(3)
      // the flow type reports its slowest pump, and is live only when all of them are
      expect(sampleValue(both, "flowcore_data_pump_lag_seconds_gauge", base)).toBe(30)
      expect(sampleValue(both, "flowcore_data_pump_live_gauge", base)).toBe(0)
      b.recorder.live(true)
      expect(sampleValue(yield* scrape, "flowcore_data_pump_live_gauge", base)).toBe(1)

      yield* a.release
      const onlyB = yield* scrape
      expect(sampleValue(onlyB, "flowcore_data_pump_buffer_events_gauge", created)).toBe(2)
      expect(sampleValue(onlyB, "flowcore_data_pump_buffer_size_bytes_gauge", created)).toBe(20)
      expect(sampleValue(onlyB, "flowcore_data_pump_lag_seconds_gauge", base)).toBe(5)
      expect(sampleValue(onlyB, "flowcore_data_pump_live_gauge", base)).toBe(1)

      // the same layer value built again after release works like a fresh pump
      const again = yield* openRecorder(layer)
      again.recorder.buffered("order.created", 1, 10)
      expect(sampleValue(yield* scrape, "flowcore_data_pump_buffer_events_gauge", created)).toBe(3)
      yield* again.release
      yield* b.release
      expect(sampleValue(yield* scrape, "flowcore_data_pump_buffer_events_gauge", created)).toBe(0)
      expect(sampleValue(yield* scrape, "flowcore_data_pump_events_acknowledged_counter", created)).toBe(3)
    })
  )

  it.effect("bad numbers are ignored instead of throwing", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      const base = baseOf(labels)
      const created = eventLabels(labels, "order.created")
      const { recorder: m, release } = yield* openRecorder(PrometheusMetrics.layer(labels))
      m.pulled("order.created", 2, 20)
      m.acknowledged("order.created", 1)
      m.buffered("order.created", 2, 20)
      m.handlerDuration(0.5, "success")

      expect(() => {
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -3]) {
          m.pulled("order.created", bad, bad)
          m.acknowledged("order.created", bad)
          m.failed("order.created", bad)
          m.redelivered("order.created", bad)
        }
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
          m.buffered("order.created", bad, bad)
          m.reserved("order.created", bad)
          m.handlerDuration(bad, "failure")
          m.fetchDuration(bad)
          m.lag(bad)
        }
        m.acknowledged("order.created", 0)
        m.handlerDuration(-0.2, "timeout")
        m.lag(-8)
      }).not.toThrow()

      const s = yield* scrape
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", created)).toBe(2)
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_size_bytes_counter", created)).toBe(20)
      expect(sampleValue(s, "flowcore_data_pump_events_acknowledged_counter", created)).toBe(1)
      expect(sampleValue(s, "flowcore_data_pump_events_failed_counter", created)).toBeUndefined()
      expect(sampleValue(s, "flowcore_data_pump_buffer_events_gauge", created)).toBe(2)
      expect(sampleValue(s, "flowcore_data_pump_buffer_size_bytes_gauge", created)).toBe(20)
      expect(sampleValue(s, "flowcore_data_pump_handler_duration_seconds_count", { ...base, outcome: "failure" })).toBe(
        undefined
      )
      expect(sampleValue(s, "flowcore_data_pump_handler_duration_seconds_count", { ...base, outcome: "success" })).toBe(
        1
      )
      expect(sampleValue(s, "flowcore_data_pump_fetch_page_duration_seconds_count", base)).toBeUndefined()
      // a duration below zero (the wall clock stepped back) still counts the call, as an instant one
      const timeout = { ...base, outcome: "timeout" }
      expect(sampleValue(s, "flowcore_data_pump_handler_duration_seconds_bucket", { ...timeout, le: "0.001" })).toBe(1)
      expect(sampleValue(s, "flowcore_data_pump_handler_duration_seconds_sum", timeout)).toBe(0)
      // a negative lag (events stamped after "now") reads as no lag
      expect(sampleValue(s, "flowcore_data_pump_lag_seconds_gauge", base)).toBe(0)
      yield* release
      expect(sampleValue(yield* scrape, "flowcore_data_pump_buffer_events_gauge", created)).toBe(0)
    })
  )

  it.effect("a re-imported module shares the registry and registers nothing twice", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      const created = eventLabels(labels, "order.created")
      const original = yield* openRecorder(PrometheusMetrics.layer(labels))
      original.recorder.pulled("order.created", 1, 10)
      original.recorder.buffered("order.created", 1, 10)

      vi.resetModules()
      const fresh = yield* Effect.promise(() => import("../../src/layers/metrics/Prometheus.ts"))
      expect(fresh.PrometheusMetrics).not.toBe(PrometheusMetrics)
      expect(fresh.dataPumpPromRegistry).toBe(dataPumpPromRegistry)

      const copy = yield* openRecorder(fresh.PrometheusMetrics.layer(labels))
      copy.recorder.pulled("order.created", 2, 20)
      copy.recorder.buffered("order.created", 2, 20)
      const s = parseScrape(yield* Effect.promise(() => fresh.dataPumpPromRegistry.metrics()))
      expect(sampleValue(s, "flowcore_data_pump_events_pulled_counter", created)).toBe(3)
      expect(sampleValue(s, "flowcore_data_pump_buffer_events_gauge", created)).toBe(3)
      for (const name of readmeMetricNames) expect(s.types.has(name), name).toBe(true)

      yield* copy.release
      expect(sampleValue(yield* scrape, "flowcore_data_pump_buffer_events_gauge", created)).toBe(1)
      yield* original.release
      expect(sampleValue(yield* scrape, "flowcore_data_pump_buffer_events_gauge", created)).toBe(0)
    })
  )

  it.effect("a pump built after the registry was cleared registers its metrics again", () =>
    Effect.gen(function* () {
      const labels = freshLabels()
      dataPumpPromRegistry.clear()
      expect((yield* scrape).samples).toHaveLength(0)
      const { recorder, release } = yield* openRecorder(PrometheusMetrics.layer(labels))
      recorder.acknowledged("order.created", 4)
      const s = yield* scrape
      expect(
        sampleValue(s, "flowcore_data_pump_events_acknowledged_counter", eventLabels(labels, "order.created"))
      ).toBe(4)
      yield* release
    })
  )
})

describe("registerMetricFamilies", () => {
  it("reuses what is already registered", () => {
    const registry = new Registry()
    const first = registerMetricFamilies(registry)
    const second = registerMetricFamilies(registry)
    expect(second.bufferEvents).toBe(first.bufferEvents)
    expect(second.sdkCommands).toBe(first.sdkCommands)
    expect(second.handlerDuration).toBe(first.handlerDuration)
    expect(registry.getMetricsAsArray()).toHaveLength(16)
  })

  it("names the metric, the kind found and the kind needed when a name is taken by something else", () => {
    const registry = new Registry()
    new Gauge({ name: "flowcore_data_pump_events_failed_counter", help: "someone else's", registers: [registry] })
    expect(() => registerMetricFamilies(registry)).toThrow(
      /"flowcore_data_pump_events_failed_counter" is already registered as a gauge with labels \[\].*needs a counter/
    )
  })

  it("rejects a same-named metric with other labels", () => {
    const registry = new Registry()
    new Gauge({
      name: "flowcore_data_pump_buffer_events_gauge",
      help: "older shape",
      labelNames: ["tenant", "event_type"],
      registers: [registry]
    })
    expect(() => registerMetricFamilies(registry)).toThrow(/labels \[tenant, event_type\]/)
  })
})
