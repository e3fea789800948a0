/**
 * Turns a checkpoint read back from storage into a validated `PumpState`, or into a one-line description of what is
 * wrong with it. Every store wraps that description in its own `CorruptState` so the message names where the value
 * came from; a store never turns an unreadable checkpoint into "no state".
 */
import { Effect, Schema } from "effect"
import { describeValue } from "../../domain/errors.ts"
import { type PumpState, PumpStateSchema } from "../../domain/PumpState.ts"

const flattenSchemaMessage = (error: Schema.SchemaError): string => error.message.replace(/\s*\n\s*/g, " ")

/**
 * Validates a `{ timeBucket, eventId? }` object. `strict` rejects unknown keys: a typo such as `eventid` in a
 * hand-edited file would otherwise silently restart the whole bucket.
 */
export const decodeCheckpoint = (
  input: unknown,
  options: { readonly strict: boolean }
): Effect.Effect<PumpState, string> =>
  Schema.decodeUnknownEffect(PumpStateSchema)(input, {
    errors: "all",
    onExcessProperty: options.strict ? "error" : "ignore"
  }).pipe(Effect.mapError((error) => `${flattenSchemaMessage(error)} (value: ${describeValue(input)})`))
