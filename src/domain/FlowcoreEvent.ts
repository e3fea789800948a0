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

const isEvent = Schema.is(FlowcoreEventFields)
const decodeEvent = Schema.decodeUnknownExit(FlowcoreEventFields)

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
      if (!isEvent(candidate)) {
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
