/**
 * The event contract of Flowcore (protocol §4): nine required fields, a JSON-object payload, and unknown fields
 * passed through untouched.
 */
import { Effect, Schema } from "effect"
import { DataSourceError } from "./errors.ts"

const JsonObject = Schema.Record(Schema.String, Schema.Unknown).pipe(
  Schema.check(
    Schema.makeFilter((value) => (Array.isArray(value) ? "payload must be a JSON object, not an array" : undefined))
  )
)

export const FlowcoreEventFields = Schema.Struct({
  eventId: Schema.String.check(Schema.isUUID(1)),
  timeBucket: Schema.String.check(Schema.isPattern(/^\d{14}$/)),
  tenant: Schema.String,
  dataCoreId: Schema.String,
  flowType: Schema.String,
  eventType: Schema.String,
  metadata: Schema.Record(Schema.String, Schema.Unknown),
  payload: JsonObject,
  validTime: Schema.String
})

/** A Flowcore event; extra fields the server adds are kept. */
export const FlowcoreEventSchema = Schema.StructWithRest(FlowcoreEventFields, [
  Schema.Record(Schema.String, Schema.Unknown)
])

export interface FlowcoreEvent {
  readonly eventId: string
  readonly timeBucket: string
  readonly tenant: string
  readonly dataCoreId: string
  readonly flowType: string
  readonly eventType: string
  readonly metadata: Readonly<Record<string, unknown>>
  readonly payload: Readonly<Record<string, unknown>>
  readonly validTime: string
  readonly [extra: string]: unknown
}

const decodeEvent = Schema.decodeUnknownExit(FlowcoreEventFields)

const V1_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i
const BUCKET = /^\d{14}$/
const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The same rules as `FlowcoreEventFields`, written out for the hot path: `Schema.is` costs about twice as much as
 * parsing the JSON. A test checks both agree; anything this rejects is decoded with the Schema for the message.
 */
export const isFlowcoreEvent = (value: unknown): value is FlowcoreEvent => {
  if (!isRecord(value)) return false
  const e = value as Record<string, unknown>
  return (
    typeof e.eventId === "string" &&
    V1_UUID.test(e.eventId) &&
    typeof e.timeBucket === "string" &&
    BUCKET.test(e.timeBucket) &&
    typeof e.tenant === "string" &&
    typeof e.dataCoreId === "string" &&
    typeof e.flowType === "string" &&
    typeof e.eventType === "string" &&
    isRecord(e.metadata) &&
    isRecord(e.payload) &&
    typeof e.validTime === "string"
  )
}

/**
 * Validates a page of raw events without copying them (the hot path): valid objects are returned as they are, so
 * unknown fields survive. The first invalid one fails with a readable description of what is wrong.
 */
export const validateEvents = (
  command: string,
  raw: unknown
): Effect.Effect<ReadonlyArray<FlowcoreEvent>, DataSourceError> =>
  Effect.suspend(() => {
    if (!Array.isArray(raw)) {
      return Effect.fail(
        new DataSourceError({
          command,
          kind: "Decode",
          retryable: true,
          message: `${command}: expected "events" to be an array`
        })
      )
    }
    for (let i = 0; i < raw.length; i++) {
      const candidate: unknown = raw[i]
      if (!isFlowcoreEvent(candidate)) {
        const exit = decodeEvent(candidate)
        const detail = exit._tag === "Failure" ? String(exit.cause).slice(0, 400) : "unknown"
        return Effect.fail(
          new DataSourceError({
            command,
            kind: "Decode",
            retryable: true,
            message: `${command}: event #${i} is not a valid Flowcore event: ${detail}`
          })
        )
      }
    }
    return Effect.succeed(raw as ReadonlyArray<FlowcoreEvent>)
  })
