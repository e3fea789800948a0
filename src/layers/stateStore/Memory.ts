/**
 * A checkpoint held in memory: for tests and local development. Lost when the process exits.
 *
 * The layer also provides `MemoryStateStore`, through which a test reads what the engine saved and makes the next
 * saves fail (to exercise the engine's save retries and its fatal-error path).
 */
import { Context, Effect, Layer, Option } from "effect"
import { StateStoreError } from "../../domain/errors.ts"
import type { PumpState } from "../../domain/PumpState.ts"
import { StateStore } from "../../services/StateStore.ts"

export class MemoryStateStore extends Context.Service<
  MemoryStateStore,
  {
    /** The current checkpoint. */
    readonly get: Effect.Effect<Option.Option<PumpState>>
    /** How many saves succeeded so far. */
    readonly saves: Effect.Effect<number>
    /** Every successfully saved checkpoint, oldest first. */
    readonly history: Effect.Effect<ReadonlyArray<PumpState>>
    /** Makes the next `count` saves fail with a `StateStoreError` (retryable unless `fatal`). */
    readonly failNextSaves: (count: number, options?: { readonly fatal?: boolean }) => Effect.Effect<void>
  }
>()("@flowcore/data-pump/MemoryStateStore") {
  /** Provides both `StateStore` (for the pump) and `MemoryStateStore` (for the test). */
  static layer(initial?: PumpState): Layer.Layer<StateStore | MemoryStateStore> {
    return Layer.effectContext(
      Effect.sync(() => {
        let current: Option.Option<PumpState> = Option.fromUndefinedOr(initial)
        const saved: Array<PumpState> = []
        let failuresLeft = 0
        let failFatally = false

        const store = StateStore.of({
          name: "memory",
          load: Effect.sync(() => current),
          save: (state) =>
            Effect.suspend(() => {
              if (failuresLeft > 0) {
                failuresLeft--
                return Effect.fail(
                  new StateStoreError({
                    store: "memory",
                    operation: "save",
                    ...(failFatally ? { fatal: true } : {}),
                    message: `Memory state store: save of checkpoint ${state.timeBucket}/${state.eventId ?? "(whole bucket)"} failed on purpose (failNextSaves)`
                  })
                )
              }
              current = Option.some(state)
              saved.push(state)
              return Effect.void
            })
        })

        const memory = MemoryStateStore.of({
          get: Effect.sync(() => current),
          saves: Effect.sync(() => saved.length),
          history: Effect.sync(() => saved.slice()),
          failNextSaves: (count, options) =>
            Effect.sync(() => {
              failuresLeft = count
              failFatally = options?.fatal === true
            })
        })

        return Context.make(StateStore, store).pipe(Context.add(MemoryStateStore, memory))
      })
    )
  }
}
