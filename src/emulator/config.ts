/**
 * The emulator's configuration, faults and error type, with the Schemas that decode them from untrusted JSON (config
 * files, the admin endpoint, CLI flags). Decoding errors name the source and the field, e.g.
 * `emulator.json: tenants[0].dataCores[1].name: Expected a value with a length of at least 1`.
 */
import { readFile } from "node:fs/promises"
import { Effect, Result, Schema, SchemaIssue } from "effect"

export interface EmulatorEventTypeConfig {
  readonly name: string
  readonly id?: string
  readonly description?: string
}
export interface EmulatorFlowTypeConfig {
  readonly name: string
  readonly id?: string
  readonly description?: string
  readonly eventTypes: ReadonlyArray<EmulatorEventTypeConfig>
}
export interface EmulatorDataCoreConfig {
  readonly name: string
  readonly id?: string
  readonly description?: string
  readonly flowTypes: ReadonlyArray<EmulatorFlowTypeConfig>
}
export interface EmulatorTenantConfig {
  readonly name: string
  readonly id?: string
  readonly dedicated?: { readonly domain: string }
  readonly dataCores: ReadonlyArray<EmulatorDataCoreConfig>
}
export interface EmulatorConfig {
  readonly tenants?: ReadonlyArray<EmulatorTenantConfig>
  /** Full keys `fc_<id>_<secret>`; default `["fc_emulator_secret"]`. */
  readonly apiKeys?: ReadonlyArray<string>
  /** Accepted bearer tokens; default none. */
  readonly bearerTokens?: ReadonlyArray<string>
}

export interface EmulatorFaults {
  /** 0..1 share of data-API requests answered with `errorStatus`. */
  readonly errorRate: number
  readonly errorStatus: number
  /** Added to every data-API response. */
  readonly latencyMs: number
  /** The next N data-API responses are truncated (invalid) JSON with status 200. */
  readonly malformedResponses: number
  /** New /notifications connections: accept TCP, never finish the upgrade. */
  readonly wsHang: boolean
  /** 0 = never; else destroy each WebSocket connection this long after it opens. */
  readonly wsDropAfterMs: number
}

export const DEFAULT_API_KEY = "fc_emulator_secret"

export const defaultFaults: EmulatorFaults = {
  errorRate: 0,
  errorStatus: 500,
  latencyMs: 0,
  malformedResponses: 0,
  wsHang: false,
  wsDropAfterMs: 0
}

export class EmulatorError extends Schema.TaggedError<EmulatorError>()("EmulatorError", {
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

const Name = Schema.String.check(Schema.isNonEmpty())
const Id = Schema.String.check(Schema.isNonEmpty())

const EventTypeConfigSchema = Schema.Struct({
  name: Name,
  id: Schema.optionalKey(Id),
  description: Schema.optionalKey(Schema.String)
})
const FlowTypeConfigSchema = Schema.Struct({
  name: Name,
  id: Schema.optionalKey(Id),
  description: Schema.optionalKey(Schema.String),
  eventTypes: Schema.Array(EventTypeConfigSchema)
})
const DataCoreConfigSchema = Schema.Struct({
  name: Name,
  id: Schema.optionalKey(Id),
  description: Schema.optionalKey(Schema.String),
  flowTypes: Schema.Array(FlowTypeConfigSchema)
})
const TenantConfigSchema = Schema.Struct({
  name: Name,
  id: Schema.optionalKey(Id),
  dedicated: Schema.optionalKey(Schema.Struct({ domain: Name })),
  dataCores: Schema.Array(DataCoreConfigSchema)
})

/** `fc_<id>_<secret>`: the shape the SDK and the pump split on `_`. */
export const ApiKeySchema = Schema.String.check(
  Schema.makeFilter((key: string) => {
    const parts = key.split("_")
    return parts.length === 3 && parts[0] === "fc" && parts[1] !== "" && parts[2] !== ""
      ? undefined
      : "an API key of the form fc_<keyId>_<secret> (three parts separated by '_', the first being 'fc')"
  })
)

export const EmulatorConfigSchema = Schema.Struct({
  tenants: Schema.optionalKey(Schema.Array(TenantConfigSchema)),
  apiKeys: Schema.optionalKey(Schema.Array(ApiKeySchema)),
  bearerTokens: Schema.optionalKey(Schema.Array(Schema.String.check(Schema.isNonEmpty())))
})

const NonNegativeInt = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))

export const FaultsPatchSchema = Schema.Struct({
  errorRate: Schema.optionalKey(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))),
  errorStatus: Schema.optionalKey(
    Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 400, maximum: 599 }))
  ),
  latencyMs: Schema.optionalKey(NonNegativeInt),
  malformedResponses: Schema.optionalKey(NonNegativeInt),
  wsHang: Schema.optionalKey(Schema.Boolean),
  wsDropAfterMs: Schema.optionalKey(NonNegativeInt)
})

const renderPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`),
    ""
  )

const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown =>
  path.reduce<unknown>(
    (acc, key) => (typeof acc === "object" && acc !== null ? (acc as Record<PropertyKey, unknown>)[key] : undefined),
    input
  )

const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

export interface FieldProblem {
  readonly path: string
  readonly message: string
}

/**
 * Decodes untrusted input; on failure returns every problem as `path: message (got <value>)`, so a person can find
 * the field without reading the schema.
 */
export const decodeWith =
  <S extends Schema.ConstraintDecoder<unknown>>(schema: S, excess: "error" | "ignore" = "error") =>
  (input: unknown): Result.Result<S["Type"], ReadonlyArray<FieldProblem>> => {
    const result = Schema.decodeUnknownResult(schema)(input, { errors: "all", onExcessProperty: excess })
    if (Result.isSuccess(result)) return Result.succeed(result.success)
    return Result.fail(
      formatIssues(result.failure.issue).issues.map((issue) => {
        const path = (issue.path ?? []).map((segment) =>
          typeof segment === "object" && segment !== null ? segment.key : segment
        )
        const got = valueAt(input, path)
        const shown = got === undefined || issue.message.includes(", got ") ? "" : ` (got ${JSON.stringify(got)})`
        return { path: renderPath(path) || "(root)", message: `${issue.message}${shown}` }
      })
    )
  }

export const describeProblems = (problems: ReadonlyArray<FieldProblem>): string =>
  problems.map((p) => `${p.path}: ${p.message}`).join("; ")

const decodeConfig = decodeWith(EmulatorConfigSchema)
const decodeFaultsPatch = decodeWith(FaultsPatchSchema)

/** Validates a config given in code; `source` names where it came from in the error. */
export const validateConfig = (input: unknown, source: string): Effect.Effect<EmulatorConfig, EmulatorError> => {
  const result = decodeConfig(input)
  return Result.isSuccess(result)
    ? Effect.succeed(result.success)
    : Effect.fail(
        new EmulatorError({ message: `Invalid emulator config (${source}): ${describeProblems(result.failure)}` })
      )
}

/** Validates a partial faults object (admin endpoint, `setFaults`, CLI). */
export const parseFaultsPatch = (input: unknown): Result.Result<Partial<EmulatorFaults>, string> => {
  const result = decodeFaultsPatch(input)
  return Result.isSuccess(result)
    ? Result.succeed(result.success)
    : Result.fail(`Invalid faults: ${describeProblems(result.failure)}`)
}

/** Loads and validates a JSON config file; the error names the path and the field. */
export const loadConfigFile = (path: string): Effect.Effect<EmulatorConfig, EmulatorError> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) =>
      new EmulatorError({ message: `Cannot read emulator config file ${path}: ${String(cause)}`, cause })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (cause) =>
          new EmulatorError({
            message: `Emulator config file ${path} is not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`,
            cause
          })
      })
    ),
    Effect.flatMap((json) => validateConfig(json, path))
  )
