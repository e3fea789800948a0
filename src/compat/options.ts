/**
 * The original README's `FlowcoreDataPump.create` options, decoded with Schema. A wrong option fails with
 * `InvalidOptions` naming the option path, the value received (never a secret) and what is allowed.
 */
import { Predicate, Schema } from "effect"
import { InvalidOptions } from "../domain/errors.ts"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { PumpStateInput } from "../domain/PumpState.ts"

/*
 * Schema words a failure after the part that failed: the base type ("Expected number | undefined"), one check ("Expected
 * an integer") or the key ("Missing key"). Every field below carries one description for all three, so the error's
 * "allowed" always reads the same for a field, whatever was wrong with it.
 */

/** A required field: a wrong type, a failed check and a missing key all read "Expected <expected>". */
const required = <S extends Schema.Top>(schema: S, expected: string) =>
  Schema.Union([schema])
    .annotate({ expected })
    .pipe(Schema.annotateKey({ messageMissingKey: `Expected ${expected}` }))

/** An optional field (absent or `undefined` are fine); anything else reads "Expected <expected>". */
const optional = <S extends Schema.Top>(schema: S, expected: string) =>
  Schema.optionalKey(Schema.UndefinedOr(schema).annotate({ expected }))

const Fn = Schema.declare(Predicate.isFunction, { expected: "a function" })
const fn = () => required(Fn, "a function")
const NonEmptyString = Schema.String.check(Schema.isMinLength(1, { expected: "a non-empty string" }))
const nonEmpty = () => required(NonEmptyString, "a non-empty string")

const intAtLeast = (min: number, expected: string) =>
  optional(Schema.Number.check(Schema.isInt({ expected }), Schema.isGreaterThanOrEqualTo(min, { expected })), expected)

const AUTH = "{ apiKey, apiKeyId? } or { getBearerToken }"
const Auth = required(
  Schema.Union([
    Schema.Struct({
      apiKey: nonEmpty(),
      apiKeyId: optional(NonEmptyString, "a non-empty string")
    }),
    Schema.Struct({ getBearerToken: fn() })
  ]),
  AUTH
)

const NATS_SERVERS = "a NATS server URL or a non-empty array of them"
const POLL_INTERVAL = "a number of milliseconds >= 100"
const NOTIFIER =
  '{ type: "websocket" } | { type: "nats", servers: string[] } | { type: "poller", intervalMs?: number >= 100 }'
const Notifier = Schema.Union([
  Schema.Struct({ type: Schema.Literal("websocket") }),
  Schema.Struct({
    type: Schema.Literal("nats"),
    servers: required(
      Schema.Union([
        NonEmptyString,
        Schema.Array(NonEmptyString).check(Schema.isMinLength(1, { expected: NATS_SERVERS }))
      ]),
      NATS_SERVERS
    )
  }),
  Schema.Struct({
    type: Schema.Literal("poller"),
    intervalMs: optional(
      Schema.Number.check(Schema.isGreaterThanOrEqualTo(100, { expected: POLL_INTERVAL })),
      POLL_INTERVAL
    )
  })
]).annotate({ expected: NOTIFIER })

const LOGGER = "an object with debug, info, warn and error functions"
const Logger = Schema.Struct({ debug: fn(), info: fn(), warn: fn(), error: fn() })

const EVENT_TYPES = "a non-empty array of event type names"
const DATA_SOURCE = "{ tenant, dataCore, flowType, eventTypes }"
const STATE_MANAGER = "{ getState, setState } functions"
const PROCESSOR = "{ handler, concurrency?, failedHandler? }"
const BOOLEAN = "true or false"

export const OptionsSchema = Schema.Struct({
  auth: Auth,
  dataSource: required(
    Schema.Struct({
      tenant: nonEmpty(),
      dataCore: nonEmpty(),
      flowType: nonEmpty(),
      eventTypes: required(
        Schema.Array(nonEmpty()).check(Schema.isMinLength(1, { expected: EVENT_TYPES })),
        EVENT_TYPES
      )
    }),
    DATA_SOURCE
  ),
  stateManager: required(Schema.Struct({ getState: fn(), setState: fn() }), STATE_MANAGER),
  processor: optional(
    Schema.Struct({
      concurrency: intAtLeast(1, "an integer >= 1"),
      handler: fn(),
      failedHandler: optional(Fn, "a function")
    }),
    PROCESSOR
  ),
  notifier: optional(Notifier, NOTIFIER),
  noTranslation: optional(Schema.Boolean, BOOLEAN),
  directMode: optional(Schema.Boolean, BOOLEAN),
  bufferSize: intAtLeast(1, "an integer >= 1"),
  logger: optional(Logger, LOGGER),
  maxRedeliveryCount: intAtLeast(-1, "an integer >= 0, or -1 to retry forever"),
  achknowledgeTimeoutMs: intAtLeast(1, "an integer number of milliseconds >= 1"),
  includeSensitiveData: optional(Schema.Boolean, BOOLEAN),
  stopAt: optional(Schema.NullOr(Schema.Date), "a valid Date, or null for no limit"),
  baseUrlOverride: optional(
    Schema.String.check(Schema.isPattern(/^https?:\/\/[^\s]+$/, { expected: "an http(s) URL" })),
    "an http(s) URL"
  ),
  handlerTimeoutMs: intAtLeast(1, "an integer number of milliseconds >= 1"),
  openTelemetry: optional(Schema.Boolean, BOOLEAN)
})

export interface FlowcoreLogger {
  debug(message: string, metadata?: Record<string, unknown>): void
  info(message: string, metadata?: Record<string, unknown>): void
  warn(message: string, metadata?: Record<string, unknown>): void
  error(message: string | Error, metadata?: Record<string, unknown>): void
}

export type FlowcoreDataPumpState = PumpStateInput

export interface FlowcoreDataPumpStateManager {
  getState(): FlowcoreDataPumpState | null | undefined | Promise<FlowcoreDataPumpState | null | undefined>
  setState(state: FlowcoreDataPumpState): void | Promise<void>
}

export type FlowcoreDataPumpAuth =
  | { readonly apiKey: string; readonly apiKeyId?: string | undefined }
  | { readonly getBearerToken: () => Promise<string | null | undefined> | string | null | undefined }

export interface FlowcoreDataPumpDataSource {
  readonly tenant: string
  readonly dataCore: string
  readonly flowType: string
  readonly eventTypes: ReadonlyArray<string>
}

export interface FlowcoreDataPumpProcessor {
  /** Events per handler call (and per batch in flight). Default 1. */
  readonly concurrency?: number | undefined
  readonly handler: (events: Array<FlowcoreEvent>) => Promise<void> | void
  readonly failedHandler?: ((events: Array<FlowcoreEvent>) => Promise<void> | void) | undefined
}

export type FlowcoreDataPumpNotifierOptions =
  | { readonly type: "websocket" }
  | { readonly type: "nats"; readonly servers: string | ReadonlyArray<string> }
  | { readonly type: "poller"; readonly intervalMs?: number | undefined }

export interface FlowcoreDataPumpOptions {
  readonly auth: FlowcoreDataPumpAuth
  readonly dataSource: FlowcoreDataPumpDataSource
  readonly stateManager: FlowcoreDataPumpStateManager
  readonly processor?: FlowcoreDataPumpProcessor | undefined
  readonly notifier?: FlowcoreDataPumpNotifierOptions | undefined
  readonly noTranslation?: boolean | undefined
  readonly directMode?: boolean | undefined
  readonly bufferSize?: number | undefined
  readonly logger?: FlowcoreLogger | undefined
  readonly maxRedeliveryCount?: number | undefined
  readonly achknowledgeTimeoutMs?: number | undefined
  readonly includeSensitiveData?: boolean | undefined
  readonly stopAt?: Date | null | undefined
  readonly baseUrlOverride?: string | undefined
  /** Not in the original: push-mode handler timeout (default 30 000 ms). */
  readonly handlerTimeoutMs?: number | undefined
  /**
   * Not in the original: send the pump's spans to the global OpenTelemetry tracer provider (register one first, e.g.
   * with `@opentelemetry/sdk-node`). Default false: no spans.
   */
  readonly openTelemetry?: boolean | undefined
}

const decode = Schema.decodeUnknownExit(OptionsSchema)

/** Reads the value at a `["a"]["b"]` path out of the input, for the error message. */
const valueAt = (input: unknown, path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>(
    (value, key) => (typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined),
    input
  )

// A value given where a bearer-token function belongs is likely the token itself.
const SECRET_FIELDS = new Set(["apiKey", "apiKeyId", "getBearerToken"])

/** Throws `InvalidOptions` for the option at `path`; for a secret field only the kind of value is named. */
const reject = (input: unknown, path: ReadonlyArray<string>, allowed: string): never => {
  const field = path.length === 0 ? "options" : path.join(".")
  const received = valueAt(input, path)
  if (path.some((part) => SECRET_FIELDS.has(part))) {
    // Only the kind of value is named: a secret must never reach a message, a log or an error report.
    const kind = typeof received
    const shown =
      received === undefined
        ? "nothing"
        : received === ""
          ? "an empty string"
          : `${/^[aeiou]/.test(kind) ? "an" : "a"} ${kind}`
    throw new InvalidOptions({
      field,
      received: shown,
      allowed,
      message: `Invalid option "${field}": received ${shown}; allowed: ${allowed}`
    })
  }
  throw InvalidOptions.of(field, received, allowed)
}

/**
 * The auth union is told apart by its key: an object with `getBearerToken` (and no `apiKey`) is the bearer form, so a
 * wrong `getBearerToken` is reported as such, not as a missing `apiKey` (the union's first member).
 */
const checkBearerAuth = (input: unknown): void => {
  const auth = valueAt(input, ["auth"])
  if (typeof auth !== "object" || auth === null || !("getBearerToken" in auth) || "apiKey" in auth) return
  if (!Predicate.isFunction((auth as { readonly getBearerToken: unknown }).getBearerToken)) {
    reject(input, ["auth", "getBearerToken"], "a function")
  }
}

/** Validates the options; throws `InvalidOptions` on the first problem. */
export const validateOptions = (input: unknown): FlowcoreDataPumpOptions => {
  checkBearerAuth(input)
  const exit = decode(input)
  if (exit._tag === "Success") return input as FlowcoreDataPumpOptions
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  const message = error !== undefined && error._tag === "Fail" ? String((error.error as Error).message) : "invalid"
  const [first, ...rest] = message.split("\n")
  const pathLine = rest.find((line) => line.trim().startsWith("at "))
  const path =
    pathLine === undefined ? [] : [...pathLine.matchAll(/\["([^"]*)"\]|\[(\d+)\]/g)].map((m) => m[1] ?? m[2] ?? "")
  return reject(input, path, (first ?? "").replace(/^Expected /, ""))
}
