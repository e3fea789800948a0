/**
 * Every failure the pump can report, as tagged errors. Each carries a `message` written for the person who has to act
 * on it: what went wrong, which field or value, and what is allowed.
 */
import { Schema } from "effect"

/** A time bucket string that is not the start of a real UTC hour in `yyyyMMddHH0000` form. */
export class InvalidTimeBucket extends Schema.TaggedError<InvalidTimeBucket>()("InvalidTimeBucket", {
  value: Schema.String,
  message: Schema.String
}) {}

/** A string that is not a version-1 (time-based) UUID. */
export class InvalidTimeUuid extends Schema.TaggedError<InvalidTimeUuid>()("InvalidTimeUuid", {
  value: Schema.String,
  message: Schema.String
}) {}

/** An option the user passed is invalid: names the option, the value received and what is allowed. */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  field: Schema.String,
  received: Schema.String,
  allowed: Schema.String,
  message: Schema.String
}) {
  static of(field: string, received: unknown, allowed: string): InvalidOptions {
    const shown = describeValue(received)
    return new InvalidOptions({
      field,
      received: shown,
      allowed,
      message: `Invalid option "${field}": received ${shown}; allowed: ${allowed}`
    })
  }
}

/** A call to the event store failed: transport, HTTP status, or a response that did not decode. */
export class DataSourceError extends Schema.TaggedError<DataSourceError>()("DataSourceError", {
  command: Schema.String,
  kind: Schema.Literals(["Transport", "Timeout", "Status", "NotJson", "Decode", "NotFound", "Auth", "Fault"]),
  status: Schema.optionalKey(Schema.Number),
  retryable: Schema.Boolean,
  retryAfterMs: Schema.optionalKey(Schema.Number),
  message: Schema.String
}) {}

/** Loading or saving the checkpoint failed. */
export class StateStoreError extends Schema.TaggedError<StateStoreError>()("StateStoreError", {
  store: Schema.String,
  operation: Schema.Literals(["load", "save"]),
  /** When true the pump stops with this error instead of retrying the save. */
  fatal: Schema.optionalKey(Schema.Boolean),
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/** The saved checkpoint exists but cannot be trusted; it is never silently treated as "no state". */
export class CorruptState extends Schema.TaggedError<CorruptState>()("CorruptState", {
  location: Schema.String,
  detail: Schema.String,
  message: Schema.String
}) {}

/** The notifier could not connect or lost its connection. The engine degrades to polling when it sees this. */
export class NotifierError extends Schema.TaggedError<NotifierError>()("NotifierError", {
  notifier: Schema.String,
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/** A user handler threw, rejected, or ran past its timeout. */
export class HandlerError extends Schema.TaggedError<HandlerError>()("HandlerError", {
  eventIds: Schema.Array(Schema.String),
  timedOut: Schema.Boolean,
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/** A control call that does not fit the pump's current lifecycle state (e.g. `start` while running). */
export class PumpLifecycleError extends Schema.TaggedError<PumpLifecycleError>()("PumpLifecycleError", {
  operation: Schema.String,
  state: Schema.String,
  message: Schema.String
}) {}

/** A short, safe rendering of a user value for error messages. */
export const describeValue = (value: unknown): string => {
  if (value === undefined) return "undefined"
  if (typeof value === "function") return "a function"
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)
  try {
    const json = JSON.stringify(value)
    return json === undefined ? String(value) : json.length > 80 ? `${json.slice(0, 80)}…` : json
  } catch {
    return String(value)
  }
}
