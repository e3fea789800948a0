/**
 * How to reach Flowcore: credentials, which flow type to read, and routing switches. Shared by the HTTP data source
 * and the notifiers so both derive their URLs and auth from one place.
 */
import { Effect, Option, Redacted } from "effect"
import { InvalidOptions } from "./errors.ts"

export type FlowcoreAuth =
  | {
      readonly _tag: "ApiKey"
      /** The whole key, `fc_<id>_<secret>`. */
      readonly apiKey: Redacted.Redacted<string>
      readonly apiKeyId: string
    }
  | {
      readonly _tag: "Bearer"
      /** Called for every request; `None` (or an empty token) sends no Authorization header. */
      readonly getToken: Effect.Effect<Option.Option<Redacted.Redacted<string>>, unknown>
    }

export interface FlowcoreSource {
  readonly tenant: string
  readonly dataCore: string
  readonly flowType: string
  readonly eventTypes: ReadonlyArray<string>
}

export interface FlowcoreConnection {
  readonly auth: FlowcoreAuth
  readonly source: FlowcoreSource
  /** Configured names are already ids: skip the data core / flow type / event type lookups. */
  readonly noTranslation: boolean
  /** Skip the dedicated-tenant instance lookup and use the public hosts. */
  readonly directMode: boolean
  /** One origin that serves every path (the emulator, a proxy, a dedicated cluster). */
  readonly baseUrlOverride: string | undefined
}

const API_KEY_SHAPE = "fc_<keyId>_<secret> (three parts separated by '_', the first being 'fc')"

/**
 * Builds API-key auth from the user's key. The key id is the middle part of the key unless given explicitly (old
 * keys). The secret is never echoed in the error.
 */
export const apiKeyAuth = (apiKey: unknown, apiKeyId?: unknown): Effect.Effect<FlowcoreAuth, InvalidOptions> =>
  Effect.suspend(() => {
    const key = Redacted.isRedacted(apiKey) ? Redacted.value(apiKey) : apiKey
    if (typeof key !== "string" || key.length === 0) {
      return Effect.fail(
        InvalidOptions.of("auth.apiKey", typeof key, `a non-empty string of the form ${API_KEY_SHAPE}`)
      )
    }
    if (apiKeyId !== undefined) {
      if (typeof apiKeyId !== "string" || apiKeyId.length === 0) {
        return Effect.fail(InvalidOptions.of("auth.apiKeyId", apiKeyId, "a non-empty string"))
      }
      return Effect.succeed({ _tag: "ApiKey", apiKey: Redacted.make(key), apiKeyId } as const)
    }
    const parts = key.split("_")
    if (parts.length !== 3 || parts[0] !== "fc" || parts[1] === "" || parts[2] === "") {
      const shape = `${parts.length} part(s)${parts[0] === "fc" ? "" : ", not starting with 'fc'"}`
      return Effect.fail(
        new InvalidOptions({
          field: "auth.apiKey",
          received: `a key with ${shape}`,
          allowed: API_KEY_SHAPE,
          message:
            `Invalid option "auth.apiKey": expected ${API_KEY_SHAPE}, got a key with ${shape}` +
            " (the key itself is not shown). Keys whose secret contains '_' need an explicit auth.apiKeyId."
        })
      )
    }
    return Effect.succeed({ _tag: "ApiKey", apiKey: Redacted.make(key), apiKeyId: parts[1] as string } as const)
  })

/** Bearer auth from a user function (sync or async); errors it throws surface as request failures. */
export const bearerAuth = (getBearerToken: () => unknown): FlowcoreAuth => ({
  _tag: "Bearer",
  getToken: Effect.tryPromise(async () => {
    const token = await getBearerToken()
    return typeof token === "string" && token.length > 0 ? Option.some(Redacted.make(token)) : Option.none()
  })
})

/** The Authorization header value for API calls, if any. */
export const authorizationHeader = (
  auth: FlowcoreAuth
): Effect.Effect<Option.Option<Redacted.Redacted<string>>, unknown> =>
  auth._tag === "ApiKey"
    ? Effect.succeed(Option.some(Redacted.make(`ApiKey ${auth.apiKeyId}:${Redacted.value(auth.apiKey)}`)))
    : Effect.map(
        auth.getToken,
        Option.map((token) => Redacted.make(`Bearer ${Redacted.value(token)}`))
      )
