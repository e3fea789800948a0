/**
 * The checkpoint: the bucket and the last fully settled event id. Resume reads strictly after `eventId`; without an
 * `eventId` the whole bucket is read.
 */
import { Schema } from "effect"
import { TimeBucketSchema } from "./TimeBucket.ts"

export const PumpStateSchema = Schema.Struct({
  timeBucket: TimeBucketSchema,
  eventId: Schema.optionalKey(Schema.String.check(Schema.isUUID(1)))
})
export type PumpState = typeof PumpStateSchema.Type

/** The state as users hand it to us (plain strings, `eventId` may be `undefined`). */
export interface PumpStateInput {
  readonly timeBucket: string
  readonly eventId?: string | undefined
}

export const decodePumpState = Schema.decodeUnknownEffect(PumpStateSchema)
