/**
 * The original README's `FlowcoreDataPump.create` options, decoded with Schema. A wrong option fails with
 * `InvalidOptions` naming the option path, the value received (never a secret) and what is allowed.
 */
import { Predicate, Schema } from "effect"
import { describeValue, InvalidOptions } from "../domain/errors.ts"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { PumpStateInput } from "../domain/PumpState.ts"

const Fn = Schema.declare(Predicate.isFunction, { expected: "a function" })
const NonEmpty = Schema.String.check(Schema.isMinLength(1)).annotate({ expected: "a non-empty string" })
const Int = (min: number) =>
  Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(min)).annotate({ expected: `an integer >= ${min}` })

const Auth = Schema.Union([
  Schema.Struct({ apiKey: NonEmpty, apiKeyId: Schema.optional(NonEmpty) }),
  Schema.Struct({ getBearerToken: Fn })
]).annotate({ expected: "{ apiKey, apiKeyId? } or { getBearerToken }" })

const Notifier = Schema.Union([
  Schema.Struct({ type: Schema.Literal("websocket") }),
  Schema.Struct({
    type: Schema.Literal("nats"),
    servers: Schema.Union([NonEmpty, Schema.Array(NonEmpty).check(Schema.isMinLength(1))])
  }),
  Schema.Struct({
    type: Schema.Literal("poller"),
    intervalMs: Schema.optional(Schema.Number.check(Schema.isGreaterThanOrEqualTo(100)))
  })
]).annotate({
  expected:
    '{ type: "websocket" } | { type: "nats", servers: string[] } | { type: "poller", intervalMs?: number >= 100 }'
})

const Logger = Schema.Struct({ debug: Fn, info: Fn, warn: Fn, error: Fn }).annotate({
  expected: "an object with debug, info, warn and error functions"
})

export const OptionsSchema = Schema.Struct({
  auth: Auth,
  dataSource: Schema.Struct({
    tenant: NonEmpty,
    dataCore: NonEmpty,
    flowType: NonEmpty,
    eventTypes: Schema.Array(NonEmpty).check(Schema.isMinLength(1)).annotate({
      expected: "a non-empty array of event type names"
    })
  }),
  stateManager: Schema.Struct({ getState: Fn, setState: Fn }),
  processor: Schema.optional(
    Schema.Struct({ concurrency: Schema.optional(Int(1)), handler: Fn, failedHandler: Schema.optional(Fn) })
  ),
  notifier: Schema.optional(Notifier),
  noTranslation: Schema.optional(Schema.Boolean),
  directMode: Schema.optional(Schema.Boolean),
  bufferSize: Schema.optional(Int(1)),
  logger: Schema.optional(Logger),
  maxRedeliveryCount: Schema.optional(Int(-1)),
  achknowledgeTimeoutMs: Schema.optional(Int(1)),
  includeSensitiveData: Schema.optional(Schema.Boolean),
  stopAt: Schema.optional(Schema.NullOr(Schema.Date)),
  baseUrlOverride: Schema.optional(
    Schema.String.check(Schema.isPattern(/^https?:\/\/[^\s]+$/)).annotate({ expected: "an http(s) URL" })
  ),
  handlerTimeoutMs: Schema.optional(Int(1))
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
}

const decode = Schema.decodeUnknownExit(OptionsSchema)

/** Reads the value at a `["a"]["b"]` path out of the input, for the error message. */
const valueAt = (input: unknown, path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>(
    (value, key) => (Predicate.isObject(value) ? (value as Record<string, unknown>)[key] : undefined),
    input
  )

const SECRET_FIELDS = new Set(["apiKey", "apiKeyId"])

/** Validates the options; throws `InvalidOptions` on the first problem. */
export const validateOptions = (input: unknown): FlowcoreDataPumpOptions => {
  const exit = decode(input)
  if (exit._tag === "Success") return input as FlowcoreDataPumpOptions
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  const message = error !== undefined && error._tag === "Fail" ? String((error.error as Error).message) : "invalid"
  const [first, ...rest] = message.split("\n")
  const pathLine = rest.find((line) => line.trim().startsWith("at "))
  const path =
    pathLine === undefined ? [] : [...pathLine.matchAll(/\["([^"]*)"\]|\[(\d+)\]/g)].map((m) => m[1] ?? m[2] ?? "")
  const field = path.length === 0 ? "options" : path.join(".")
  const allowed = (first ?? "").replace(/^Expected /, "")
  const received = valueAt(input, path)
  const secret = path.some((part) => SECRET_FIELDS.has(part))
  throw InvalidOptions.of(field, secret ? `a ${typeof received}` : received, allowed)
}

export { describeValue }
