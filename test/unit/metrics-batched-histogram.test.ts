/**
 * The handler-duration histogram counts observations in plain numbers and adds them to prom-client when metrics are
 * read: a scrape must show exactly what prom-client's own `observe` would have recorded.
 */
import { describe, expect, it } from "@effect/vitest"
import { Histogram, Registry } from "prom-client"
import { batchedSeries } from "../../src/layers/metrics/BatchedHistogram.ts"

const buckets = [0.001, 0.01, 0.1, 1, 10]
const labels = { pump: "a", outcome: "success" }

const histogramIn = (registry: Registry, collect?: () => void) =>
  new Histogram({
    name: "duration_seconds",
    help: "test",
    labelNames: ["pump", "outcome"],
    buckets,
    registers: [registry],
    ...(collect === undefined ? {} : { collect })
  })

// On a bound, between bounds, above the largest bound, and zero.
const values = [0, 0.001, 0.0015, 0.01, 0.5, 1, 9.99, 10, 11, 250]

describe("batchedSeries", () => {
  it("a scrape shows the same buckets, sum and count as observing each value", async () => {
    const reference = new Registry()
    const observed = histogramIn(reference)
    for (const value of values) observed.observe(labels, value)

    const batched = new Registry()
    let series: ReturnType<typeof batchedSeries> | undefined
    const histogram = histogramIn(batched, () => series?.flush())
    series = batchedSeries(histogram, labels)
    for (const value of values) series.observe(value)

    expect(await batched.metrics()).toBe(await reference.metrics())
  })

  it("adds to what earlier scrapes showed, beside other series of the same histogram, and survives a reset", async () => {
    const registry = new Registry()
    let series: ReturnType<typeof batchedSeries> | undefined
    const histogram = histogramIn(registry, () => series?.flush())
    histogram.observe({ pump: "b", outcome: "success" }, 0.5)
    series = batchedSeries(histogram, labels)
    series.observe(0.005)
    await registry.metrics()
    series.observe(0.005)
    series.observe(5)
    const text = await registry.metrics()
    expect(text).toContain('duration_seconds_count{pump="a",outcome="success"} 3')
    expect(text).toContain('duration_seconds_bucket{le="0.01",pump="a",outcome="success"} 2')
    expect(text).toContain('duration_seconds_sum{pump="a",outcome="success"} 5.01')
    expect(text).toContain('duration_seconds_count{pump="b",outcome="success"} 1')

    registry.resetMetrics()
    series.observe(0.05)
    const afterReset = await registry.metrics()
    expect(afterReset).toContain('duration_seconds_count{pump="a",outcome="success"} 1')
    expect(afterReset).toContain('duration_seconds_bucket{le="0.01",pump="a",outcome="success"} 0')
    expect(afterReset).toContain('duration_seconds_bucket{le="0.1",pump="a",outcome="success"} 1')
  })

  it("a histogram without prom-client 15's internals gets every observation at once", () => {
    const seen: Array<number> = []
    const foreign = {
      labels: () => ({ observe: (value: number) => seen.push(value) })
    } as unknown as Histogram<"pump" | "outcome">
    const series = batchedSeries(foreign, labels)
    series.observe(0.2)
    series.observe(3)
    expect(seen).toEqual([0.2, 3])
  })
})
