/**
 * One Flowcore REST command over `effect/http`: per-attempt auth header, timeout and metrics, Schedule-based retries
 * that honour `Retry-After`, and the mapping of every failure to a `DataSourceError` whose message is safe to log.
 */
import { Clock, Duration, Effect, Option, Redacted, Schedule, Schema, Tracer } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { authorizationHeader, type FlowcoreAuth } from "../../domain/config.ts"
import { DataSourceError } from "../../domain/errors.ts"
import type { PumpMetricsRecorder } from "../../services/PumpMetrics.ts"

export type CommandName =
  | "EventList"
  | "TimeBucketList"
  | "DataCoreFetch"
  | "FlowTypeFetch"
  | "EventTypeList"
  | "TenantInstanceFetch"
  | "TenantTranslateNameToId"

export interface RetryPolicy {
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  readonly maxRetries: number
}

/** A 2xx response body, read once. */
export interface ResponseBody {
  readonly status: number
  readonly text: string
  readonly bytes: number
}

export interface CommandRunner {
  /** A GET with retries. */
  readonly get: (
    command: CommandName,
    url: string,
    params: ReadonlyArray<readonly [string, string]>
  ) => Effect.Effect<ResponseBody, DataSourceError>
  /** A single attempt, for requests whose caller falls back to `get` when it fails. */
  readonly getOnce: (
    command: CommandName,
    url: string,
    params: ReadonlyArray<readonly [string, string]>
  ) => Effect.Effect<ResponseBody, DataSourceError>
}

/** The statuses the original SDK retries (protocol §5); every other non-2xx fails fast. */
const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504])

const EXCERPT_LENGTH = 200

/**
 * Patterns that look like credentials even when they are not ours (a proxy echoing another key, a JWT in an error
 * page): API keys, Authorization header values and JWTs.
 */
const SECRET_PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\b(Bearer|ApiKey)\s+[^\s"',}]+/gi, "$1 <redacted>"],
  [/\bfc_[A-Za-z0-9-]+_[^\s"',}]+/g, "<redacted>"],
  [/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?/g, "<redacted>"]
]

/** Removes the given secrets and anything shaped like a credential, then shortens to `EXCERPT_LENGTH` characters. */
export const safeExcerpt = (text: string, secrets: ReadonlyArray<string>): string => {
  const longest = secrets.reduce((max, s) => Math.max(max, s.length), 0)
  // Cut before scrubbing (bodies can be megabytes) but keep enough to recognise a secret straddling the cut.
  let out = text.length > EXCERPT_LENGTH + longest + 64 ? text.slice(0, EXCERPT_LENGTH + longest + 64) : text
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join("<redacted>")
  }
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement)
  out = out.replace(/\s+/g, " ").trim()
  return out.length > EXCERPT_LENGTH ? `${out.slice(0, EXCERPT_LENGTH - 1)}…` : out
}

const credentialSecrets = (auth: FlowcoreAuth, header: Option.Option<Redacted.Redacted<string>>): Array<string> => {
  const secrets: Array<string> = []
  if (auth._tag === "ApiKey") secrets.push(Redacted.value(auth.apiKey))
  if (Option.isSome(header)) {
    const value = Redacted.value(header.value)
    secrets.push(value, value.slice(value.indexOf(" ") + 1))
  }
  return secrets
}

/** `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
export const parseRetryAfter = (value: string | undefined, nowMs: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}

const errorDetail = (cause: unknown): string => {
  if (cause instanceof Error) {
    const nested = (cause as { readonly cause?: unknown }).cause
    return nested instanceof Error && nested.message !== cause.message
      ? `${cause.message}: ${nested.message}`
      : cause.message
  }
  return String(cause)
}

const isRetried = (error: DataSourceError): boolean =>
  error.retryable && (error.kind === "Transport" || error.kind === "Timeout" || error.kind === "Status")

/**
 * Exponential backoff with jitter, then `Retry-After` as a floor, then the cap: the cap comes last so that neither the
 * 1.2× jitter nor a huge `Retry-After` can exceed `maxDelayMs`.
 */
export const retrySchedule = (policy: RetryPolicy) =>
  Schedule.exponential(Duration.millis(policy.baseDelayMs)).pipe(
    Schedule.jittered,
    Schedule.setInputType<DataSourceError>(),
    Schedule.modifyDelay(({ duration, input }) =>
      Effect.succeed(
        Duration.millis(Math.min(policy.maxDelayMs, Math.max(Duration.toMillis(duration), input.retryAfterMs ?? 0)))
      )
    ),
    Schedule.upTo({ times: policy.maxRetries })
  )

export const makeCommandRunner = (deps: {
  readonly client: HttpClient.HttpClient
  readonly auth: FlowcoreAuth
  readonly metrics: PumpMetricsRecorder
  readonly requestTimeoutMs: number
  readonly retry: RetryPolicy
}): CommandRunner => {
  const { auth, client, metrics } = deps
  const schedule = retrySchedule(deps.retry)
  const timeout = Duration.millis(deps.requestTimeoutMs)

  const always = () => true
  /**
   * Effect's default tracer keeps its spans nowhere: then the request gets no client span (nor the propagation headers
   * that describe it), as handlers get none, since both cost time on every page; with a real tracer every request has
   * its span.
   */
  const execute = (request: HttpClientRequest.HttpClientRequest) =>
    Effect.withFiber((fiber) =>
      fiber.getRef(Tracer.Tracer) === Tracer.nativeTracer
        ? Effect.provideService(client.execute(request), HttpClient.TracerDisabledWhen, always)
        : client.execute(request)
    )

  const attempt = (command: CommandName, request: HttpClientRequest.HttpClientRequest, where: string) =>
    Effect.gen(function* () {
      const header = yield* authorizationHeader(auth).pipe(
        Effect.mapError(
          (cause) =>
            new DataSourceError({
              command,
              kind: "Auth",
              // The token provider is the user's code (often an OIDC call): a failure there is usually transient.
              retryable: true,
              message: `${command}: the bearer token provider failed: ${safeExcerpt(errorDetail(cause), [])}`
            })
        )
      )
      const authorized = Option.isSome(header)
        ? HttpClientRequest.setHeader(request, "authorization", Redacted.value(header.value))
        : request
      metrics.commandSent(command)
      const response = yield* execute(authorized).pipe(
        Effect.mapError(
          (error) =>
            new DataSourceError({
              command,
              kind: "Transport",
              retryable: error.reason._tag !== "InvalidUrlError",
              message: `${command} (${where}) failed before a response arrived: ${safeExcerpt(
                errorDetail(error.reason.cause ?? error.reason.message),
                credentialSecrets(auth, header)
              )}`
            })
        )
      )
      const readFailure = (error: { readonly message: string }) =>
        new DataSourceError({
          command,
          kind: "Transport",
          status: response.status,
          retryable: true,
          message: `${command} (${where}): reading the HTTP ${response.status} response body failed: ${safeExcerpt(
            error.message,
            credentialSecrets(auth, header)
          )}`
        })
      if (response.status >= 200 && response.status < 300) {
        const buffer = yield* Effect.mapError(response.arrayBuffer, readFailure)
        return {
          status: response.status,
          text: decoder.decode(buffer),
          bytes: buffer.byteLength
        } satisfies ResponseBody
      }
      const text = yield* Effect.mapError(response.text, readFailure)
      const now = yield* Clock.currentTimeMillis
      const retryAfterMs = parseRetryAfter(response.headers["retry-after"], now)
      const status = response.status
      const isAuth = status === 401 || status === 403
      const excerpt = safeExcerpt(text, credentialSecrets(auth, header))
      return yield* new DataSourceError({
        command,
        kind: isAuth ? "Auth" : "Status",
        status,
        retryable: RETRYABLE_STATUSES.has(status),
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        message: isAuth
          ? `${command} (${where}) was refused with HTTP ${status}; check the API key / bearer token: ${excerpt}`
          : `${command} (${where}) failed with HTTP ${status}: ${excerpt}`
      })
    }).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(
            new DataSourceError({
              command,
              kind: "Timeout",
              retryable: true,
              message: `${command} (${where}) timed out after ${deps.requestTimeoutMs} ms`
            })
          )
      })
    )

  const getRequest = (url: string, params: ReadonlyArray<readonly [string, string]>) => ({
    request: HttpClientRequest.get(url, { urlParams: params, acceptJson: true }),
    where: `GET ${url.replace(/^[a-z]+:\/\/[^/]+/i, "")}`
  })

  return {
    getOnce: (command, url, params) =>
      Effect.suspend(() => {
        const { request, where } = getRequest(url, params)
        return attempt(command, request, where)
      }),
    get: (command, url, params) =>
      Effect.suspend(() => {
        const { request, where } = getRequest(url, params)
        let attempts = 0
        return Effect.suspend(() => {
          attempts++
          return attempt(command, request, where)
        }).pipe(
          Effect.retry({ schedule, while: isRetried }),
          Effect.mapError((error) =>
            attempts > 1 ? new DataSourceError({ ...error, message: `${error.message} (${attempts} attempts)` }) : error
          )
        )
      })
  }
}

const decoder = new TextDecoder()

/** A 2xx body (or a part of it) that is not JSON; retryable by the engine. */
export const notJson = (command: CommandName, body: ResponseBody) =>
  new DataSourceError({
    command,
    kind: "NotJson",
    status: body.status,
    retryable: true,
    message: `${command}: the HTTP ${body.status} response is not JSON (${body.bytes} bytes): ${safeExcerpt(body.text, [])}`
  })

/** Decodes the parsed JSON of `body`; a mismatch is retryable by the engine but not retried here. */
export const decodeJson = <S extends Schema.ConstraintDecoder<unknown>>(
  command: CommandName,
  body: ResponseBody,
  json: unknown,
  schema: S
): Effect.Effect<S["Type"], DataSourceError> =>
  Schema.decodeUnknownEffect(schema)(json).pipe(
    Effect.mapError(
      (error) =>
        new DataSourceError({
          command,
          kind: "Decode",
          status: body.status,
          retryable: true,
          message: `${command}: the HTTP ${body.status} response has an unexpected shape: ${safeExcerpt(error.message, [])}`
        })
    )
  )

/** Parses a 2xx body once and decodes it; both failures are retryable by the engine but not retried here. */
export const decodeBody = <S extends Schema.ConstraintDecoder<unknown>>(
  command: CommandName,
  body: ResponseBody,
  schema: S
): Effect.Effect<S["Type"], DataSourceError> =>
  Effect.suspend(() => {
    let json: unknown
    try {
      json = JSON.parse(body.text)
    } catch {
      return Effect.fail(notJson(command, body))
    }
    return decodeJson(command, body, json, schema)
  })
