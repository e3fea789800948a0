/**
 * Hourly time buckets: `yyyyMMddHH0000`, the start of a UTC hour. Events are stored and paged per bucket.
 */
import { Effect, Schema } from "effect"
import { InvalidTimeBucket } from "./errors.ts"

const HOUR_MS = 3_600_000
const FORMAT = /^(\d{4})(\d{2})(\d{2})(\d{2})0000$/

const problemOf = (value: string): string | undefined => {
  if (!/^\d{14}$/.test(value)) return "must be 14 digits in the form yyyyMMddHH0000"
  const match = FORMAT.exec(value)
  if (match === null) return "minutes and seconds must be 0000 (a bucket is the start of an hour)"
  const [, y, mo, d, h] = match as unknown as [string, string, string, string, string]
  const date = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h)))
  if (
    date.getUTCFullYear() !== Number(y) ||
    date.getUTCMonth() !== Number(mo) - 1 ||
    date.getUTCDate() !== Number(d) ||
    date.getUTCHours() !== Number(h)
  ) {
    return "is not a real UTC date and hour"
  }
  return undefined
}

/** Schema of a validated time bucket (a branded string). */
export const TimeBucketSchema = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((value: string) => {
      const problem = problemOf(value)
      return problem === undefined ? undefined : `time bucket ${JSON.stringify(value)} ${problem}`
    })
  ),
  Schema.brand("TimeBucket")
)
export type TimeBucket = typeof TimeBucketSchema.Type

const invalid = (value: unknown, problem: string) =>
  new InvalidTimeBucket({
    value: String(value),
    message: `Invalid time bucket ${JSON.stringify(value)}: ${problem}`
  })

const pad = (n: number, width = 2) => String(n).padStart(width, "0")

/** Parses a string into a TimeBucket, or fails with an error naming the value and what is wrong. */
export const parse = (value: unknown): Effect.Effect<TimeBucket, InvalidTimeBucket> => {
  if (typeof value !== "string") return Effect.fail(invalid(value, "must be a string"))
  const problem = problemOf(value)
  return problem === undefined ? Effect.succeed(value as TimeBucket) : Effect.fail(invalid(value, problem))
}

/** Like `parse` but throws; for values known to be valid (e.g. constants in tests). */
export const make = (value: string): TimeBucket => {
  const problem = problemOf(value)
  if (problem !== undefined) throw invalid(value, problem)
  return value as TimeBucket
}

export const isTimeBucket = (value: unknown): value is TimeBucket =>
  typeof value === "string" && problemOf(value) === undefined

/** The bucket holding this instant (the UTC hour it falls in). */
export const fromDate = (date: Date | number): TimeBucket => {
  const d = new Date(typeof date === "number" ? date : date.getTime())
  return `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}0000` as TimeBucket
}

/** Start of the bucket's hour, in epoch milliseconds. */
export const toEpochMillis = (bucket: TimeBucket): number =>
  Date.UTC(
    Number(bucket.slice(0, 4)),
    Number(bucket.slice(4, 6)) - 1,
    Number(bucket.slice(6, 8)),
    Number(bucket.slice(8, 10))
  )

export const toDate = (bucket: TimeBucket): Date => new Date(toEpochMillis(bucket))

/** The bucket of the following hour. */
export const next = (bucket: TimeBucket): TimeBucket => fromDate(toEpochMillis(bucket) + HOUR_MS)

/** Instant at which the bucket's hour ends (exclusive). */
export const endEpochMillis = (bucket: TimeBucket): number => toEpochMillis(bucket) + HOUR_MS

/** Buckets have a fixed width, so string order is time order. */
export const compare = (a: TimeBucket, b: TimeBucket): -1 | 0 | 1 => (a < b ? -1 : a > b ? 1 : 0)
