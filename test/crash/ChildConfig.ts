/**
 * What the harness tells one pump child run, passed as a single JSON argument and decoded with Schema on the child's
 * side (it is input from another process, so it is checked, not trusted).
 */
import { Schema } from "effect"

export const Source = Schema.Struct({
  tenant: Schema.String,
  dataCore: Schema.String,
  flowType: Schema.String,
  eventTypes: Schema.Array(Schema.String)
})
export type Source = typeof Source.Type

export const StoreConfig = Schema.Union([
  Schema.Struct({ type: Schema.Literal("file"), path: Schema.String }),
  Schema.Struct({ type: Schema.Literal("postgres"), schema: Schema.String, id: Schema.String })
])
export type StoreConfig = typeof StoreConfig.Type

/**
 * - `event`: `{ handleEvent, concurrency }`, one event per handler call;
 * - `batch`: `{ handler, concurrency }`, batches of up to `concurrency` events;
 * - `transactional`: `{ handler: transactionalHandler(...), sequential: true }` projecting into `projection`.
 */
export const HandlerMode = Schema.Literals(["event", "batch", "transactional"])
export type HandlerMode = typeof HandlerMode.Type

const Probability = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))
const PositiveInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

export const ChildConfig = Schema.Struct({
  /** The emulator's base URL (the pump's `baseUrlOverride`). */
  url: Schema.String,
  source: Source,
  /** Every line this run completes goes here: `<eventId> s` (handled) or `<eventId> f` (failed handler). */
  logPath: Schema.String,
  /** Transactional mode: every unique violation on `projection` (a committed event delivered again). */
  violationsPath: Schema.String,
  /** One line per completed checkpoint save: `<start ms> <duration ms> <eventId or timeBucket>`. */
  savesPath: Schema.String,
  /** With --trace: every delivery (`<eventId> d<attempt>`) and injected failure (`<eventId> x`) of this run. */
  tracePath: Schema.optionalKey(Schema.String),
  store: StoreConfig,
  /** Where the very first run starts when the store holds no checkpoint yet. */
  fromTimeBucket: Schema.String,
  /** ISO instant; only the final run gets one. */
  stopAt: Schema.optionalKey(Schema.String),
  mode: HandlerMode,
  concurrency: PositiveInt,
  bufferSize: PositiveInt,
  maxRedeliveryCount: Schema.Int.check(Schema.isGreaterThanOrEqualTo(-1)),
  failureRate: Probability,
  /** Seeds the failure draws, so a run's failure pattern can be replayed. */
  seed: Schema.Int
})
export type ChildConfig = typeof ChildConfig.Type

export const ChildConfigJson = Schema.fromJsonString(ChildConfig)

/** The child prints this line on stdout once `start` (or the first `restart`) has returned. */
export const STARTED_LINE = "crash-child:started"

export const PROJECTION_TABLE = "projection"

export const postgres = { host: "127.0.0.1", port: 5432, database: "test", username: "postgres" } as const

/** mulberry32: a tiny seeded PRNG, so kill instants and failure draws are reproducible from one seed. */
export const seededRandom = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}
