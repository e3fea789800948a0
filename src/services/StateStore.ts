/**
 * StateStore: loads and saves the checkpoint. The engine decides *what* to save (the watermark) and *when* (it may
 * coalesce saves); a store only has to persist the value durably.
 */
import { Context, type Effect, type Option } from "effect"
import type { CorruptState, StateStoreError } from "../domain/errors.ts"
import type { PumpState } from "../domain/PumpState.ts"

export class StateStore extends Context.Service<
  StateStore,
  {
    readonly name: string
    /** `None` when nothing was saved yet. A saved value that cannot be read fails with `CorruptState`. */
    readonly load: Effect.Effect<Option.Option<PumpState>, StateStoreError | CorruptState>
    readonly save: (state: PumpState) => Effect.Effect<void, StateStoreError>
  }
>()("@flowcore/data-pump/StateStore") {}
