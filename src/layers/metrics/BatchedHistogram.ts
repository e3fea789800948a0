/**
 * One histogram series whose observations are counted in plain numbers and added to prom-client when metrics are
 * read. prom-client's `observe` validates and hashes the labels on every call, which at one handler call per event
 * cost more than a no-op handler. Adding counts in bulk needs the series' record in the histogram (`hashMap` entries
 * of `{ labels, bucketValues, sum, count }` and the `upperBounds` list, as in prom-client 15); a histogram without
 * them (another prom-client) gets every observation through `observe`, one by one, at once.
 */
import type { Histogram } from "prom-client"

interface SeriesRecord {
  readonly labels: Record<string, unknown>
  readonly bucketValues: Record<number, number>
  sum: number
  count: number
}

interface HistogramInternals {
  readonly upperBounds: ReadonlyArray<number>
  readonly hashMap: Record<string, SeriesRecord>
}

const internalsOf = (histogram: object): HistogramInternals | undefined => {
  const candidate = histogram as Partial<HistogramInternals>
  return Array.isArray(candidate.upperBounds) &&
    candidate.upperBounds.every((bound) => typeof bound === "number") &&
    typeof candidate.hashMap === "object" &&
    candidate.hashMap !== null
    ? (candidate as HistogramInternals)
    : undefined
}

const isRecordOf = (record: SeriesRecord, labels: Record<string, string>): boolean => {
  const keys = Object.keys(labels)
  return (
    typeof record.bucketValues === "object" &&
    Object.keys(record.labels).length === keys.length &&
    keys.every((key) => String(record.labels[key]) === labels[key])
  )
}

export interface BatchedSeries {
  readonly observe: (value: number) => void
  /** Adds the counts since the last flush to prom-client's series. */
  readonly flush: () => void
}

export const batchedSeries = <L extends string>(histogram: Histogram<L>, labels: Record<L, string>): BatchedSeries => {
  const internals = internalsOf(histogram)
  if (internals === undefined) {
    const child = histogram.labels(labels)
    return { observe: (value) => child.observe(value), flush: () => {} }
  }
  const bounds = internals.upperBounds
  // counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is above every bound (only in +Inf).
  let counts = new Float64Array(bounds.length + 1)
  let sum = 0
  let count = 0

  const record = (): SeriesRecord | undefined => {
    const find = () => Object.values(internals.hashMap).find((candidate) => isRecordOf(candidate, labels))
    const found = find()
    if (found !== undefined) return found
    // Not observed yet, or the histogram was reset: `zero` creates the series without touching any other.
    histogram.zero(labels)
    return find()
  }

  return {
    observe: (value) => {
      let i = 0
      while (i < bounds.length && value > (bounds[i] as number)) i++
      counts[i] = (counts[i] as number) + 1
      sum += value
      count++
    },
    flush: () => {
      if (count === 0) return
      const target = record()
      if (target !== undefined) {
        for (let i = 0; i < bounds.length; i++) {
          const bound = bounds[i] as number
          target.bucketValues[bound] = (target.bucketValues[bound] ?? 0) + (counts[i] as number)
        }
        target.sum += sum
        target.count += count
      }
      counts = new Float64Array(bounds.length + 1)
      sum = 0
      count = 0
    }
  }
}
