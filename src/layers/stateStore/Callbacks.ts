/**
 * The original README's `stateManager`: the user's own `getState` / `setState` pair, sync or async.
 *
 * `getState`'s result is validated like any other stored checkpoint (a bad bucket or id is `CorruptState`, never
 * "start fresh"). A throwing `setState` either asks the engine to retry the save with backoff (`onSaveError:
 * "retry"`, the default) or to stop the pump (`"stop"`, for users whose progress must never run ahead of what they
 * managed to persist).
 */
import { Effect, Layer, Option, Semaphore } from "effect"
import { CorruptState, describeValue, InvalidOptions, StateStoreError } from "../../domain/errors.ts"
import type { PumpState, PumpStateInput } from "../../domain/PumpState.ts"
import { StateStore } from "../../services/StateStore.ts"
import { decodeCheckpoint } from "./CheckpointDecoder.ts"

export interface CallbacksStateStoreOptions {
  /** The checkpoint to resume from; `null`/`undefined` starts at the live edge. */
  readonly getState: () => PumpStateInput | null | undefined | PromiseLike<PumpStateInput | null | undefined>
  /** Called with a fresh `{ timeBucket, eventId }` object for every checkpoint the pump saves. */
  readonly setState: (state: PumpStateInput) => void | PromiseLike<void>
  /** What a throwing `setState` means: `"retry"` (default) retries with backoff, `"stop"` stops the pump. */
  readonly onSaveError?: "retry" | "stop" | undefined
}

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : describeValue(cause))

/** Users hand back `eventId: null` or `undefined` to mean "the whole bucket"; the checkpoint schema wants it absent. */
const normalize = (value: unknown): unknown => {
  if (typeof value !== "object" || value === null || !("eventId" in value)) return value
  const { eventId, ...rest } = value as Record<string, unknown>
  return eventId === null || eventId === undefined ? rest : value
}

export const CallbacksStateStore = {
  layer(options: CallbacksStateStoreOptions): Layer.Layer<StateStore, InvalidOptions> {
    return Layer.effect(
      StateStore,
      Effect.gen(function* () {
        if (typeof options.getState !== "function") {
          return yield* InvalidOptions.of("stateManager.getState", options.getState, "a function")
        }
        if (typeof options.setState !== "function") {
          return yield* InvalidOptions.of("stateManager.setState", options.setState, "a function")
        }
        const onSaveError = options.onSaveError ?? "retry"
        if (onSaveError !== "retry" && onSaveError !== "stop") {
          return yield* InvalidOptions.of("stateManager.onSaveError", onSaveError, '"retry" or "stop"')
        }
        const { getState, setState } = options
        // An async setState may take a while; one call at a time means the user never sees checkpoints out of order.
        const saveLock = yield* Semaphore.make(1)

        const load = Effect.tryPromise({
          try: async () => await getState(),
          catch: (cause) =>
            new StateStoreError({
              store: "callbacks",
              operation: "load",
              message: `Callbacks state store: stateManager.getState() threw: ${reasonOf(cause)}`,
              cause
            })
        }).pipe(
          Effect.flatMap((value) =>
            value === null || value === undefined
              ? Effect.succeedNone
              : decodeCheckpoint(normalize(value), { strict: false }).pipe(
                  Effect.map(Option.some),
                  Effect.mapError(
                    (detail) =>
                      new CorruptState({
                        location: "stateManager.getState()",
                        detail,
                        message: `The state returned by stateManager.getState() is invalid: ${detail}. Return null to start from the live edge, or { timeBucket: "yyyyMMddHH0000", eventId?: "<version-1 uuid>" }.`
                      })
                  )
                )
          ),
          Effect.withSpan("CallbacksStateStore.load")
        )

        const save = (state: PumpState) =>
          Effect.tryPromise({
            try: async () => {
              await setState({ timeBucket: state.timeBucket, eventId: state.eventId })
            },
            catch: (cause) =>
              new StateStoreError({
                store: "callbacks",
                operation: "save",
                fatal: onSaveError === "stop",
                message: `Callbacks state store: stateManager.setState(${state.timeBucket}/${state.eventId ?? "(whole bucket)"}) threw: ${reasonOf(cause)}${onSaveError === "stop" ? ' (onSaveError is "stop": the pump stops)' : " (retrying)"}`,
                cause
              })
          }).pipe(saveLock.withPermit, Effect.withSpan("CallbacksStateStore.save"))

        return StateStore.of({ name: "callbacks", load, save })
      })
    )
  }
}
