/**
 * Saves the watermark through the StateStore. Saves are coalesced (a save always writes the newest watermark, at most
 * every `checkpoint.everyEvents` settled events and/or `checkpoint.intervalMs`), retried with backoff while the store
 * is down, and never write anything but the watermark, so the checkpoint can never pass an unsettled event.
 */
import { Clock, Duration, Effect } from "effect"
import type { StateStoreError } from "../domain/errors.ts"
import type { PumpState } from "../domain/PumpState.ts"
import type { Buffer } from "../services/EventBuffer.ts"
import type { PumpMetricsRecorder } from "../services/PumpMetrics.ts"
import type { StateStore } from "../services/StateStore.ts"
import type { ResolvedOptions } from "./PumpOptions.ts"
import type { PumpStatus } from "./PumpStatus.ts"
import { supervised } from "./supervise.ts"
import { traced } from "./tracing.ts"

export interface CheckpointerDeps {
  readonly buffer: Buffer
  readonly store: StateStore["Service"]
  readonly metrics: PumpMetricsRecorder
  readonly status: PumpStatus
  readonly options: ResolvedOptions<unknown>
}

export interface Checkpointer {
  /** Saves one state now (retrying while the store is down); fails only with a fatal store error. */
  readonly save: (state: PumpState) => Effect.Effect<void, StateStoreError>
  /** The coalescing save loop; fails only with a fatal store error. */
  readonly loop: Effect.Effect<never, StateStoreError>
  /** Saves the watermark if it moved since the last save. */
  readonly flush: Effect.Effect<void, StateStoreError>
}

export const makeCheckpointer = (deps: CheckpointerDeps): Checkpointer => {
  const { buffer, metrics, options, status, store } = deps
  let savedVersion = buffer.snapshot().watermarkVersion
  let savedSettled = 0
  let lastSaveAt = 0

  const saveOnce = (state: PumpState) =>
    Effect.uninterruptible(store.save(state)).pipe(
      Effect.tapError(() =>
        Effect.sync(() => {
          status.checkpointFailures++
          metrics.checkpointSaveFailed()
        })
      )
    )

  const save = (state: PumpState) =>
    supervised(status.checkpointing, "Saving the checkpoint", options.supervisionSchedule, saveOnce(state), {
      while: (error) => error.fatal !== true
    }).pipe(
      Effect.tap(() =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            lastSaveAt = now
            status.checkpointSaves++
            metrics.checkpointSaved()
          })
        )
      ),
      traced("DataPump.saveCheckpoint", {
        "flowcore.time_bucket": state.timeBucket,
        "flowcore.event_id": state.eventId ?? ""
      })
    )

  const saveWatermark = Effect.suspend(() => {
    const snapshot = buffer.snapshot()
    if (snapshot.watermark === undefined || snapshot.watermarkVersion === savedVersion) return Effect.void
    return Effect.tap(save(snapshot.watermark), () =>
      Effect.sync(() => {
        savedVersion = snapshot.watermarkVersion
        savedSettled = snapshot.settled
        buffer.confirmSaved(snapshot.watermarkVersion)
      })
    )
  })

  /**
   * Settled events count against the buffer until a save covers them; when they are what keeps the fetcher waiting
   * (or about to wait, short of half a page), waiting for more settles (or for the interval) could wait forever, so
   * the save is due now.
   */
  const fetcherBlocked = () =>
    buffer.fetcherWaitsForSave() || (buffer.freeSlots() < options.refillFreeSlots && buffer.snapshot().unsaved > 0)

  const untilDue = Effect.gen(function* () {
    const every = options.checkpointEveryEvents
    const interval = options.checkpointIntervalMs
    if (fetcherBlocked()) return
    if (every <= 1) {
      if (interval > 0) {
        const wait = lastSaveAt + interval - (yield* Clock.currentTimeMillis)
        // The interval spaces saves out, but never while the fetcher waits for the space this save frees.
        if (wait > 0) yield* Effect.raceFirst(Effect.sleep(Duration.millis(wait)), buffer.awaitSaveWanted)
      }
      return
    }
    for (;;) {
      const snapshot = buffer.snapshot()
      if (snapshot.settled - savedSettled >= every || fetcherBlocked()) return
      if (interval <= 0) {
        yield* buffer.awaitWatermark(snapshot.watermarkVersion)
        continue
      }
      const remaining = lastSaveAt + interval - (yield* Clock.currentTimeMillis)
      if (remaining <= 0) return
      yield* Effect.raceFirst(
        Effect.asVoid(buffer.awaitWatermark(snapshot.watermarkVersion)),
        Effect.sleep(Duration.millis(remaining))
      )
    }
  })

  const forever: Effect.Effect<never, StateStoreError> = Effect.forever(
    Effect.gen(function* () {
      // Also returns, with no new watermark, when the fetcher starts waiting for a save (untilDue sees it). The
      // buffer wakes this fiber on the scheduler turn after the acknowledgements, so that fast handlers cost one save
      // per turn instead of one per event, or at once when that save frees the room the fetcher waits for.
      yield* buffer.awaitWatermark(savedVersion)
      yield* untilDue
      yield* saveWatermark
    }),
    // Straight back to waiting: a yield here would leave the fiber off the watermark's waiters for a turn, and an
    // immediate wake would find nobody to run. Every iteration waits for a new watermark (or a wanted save) first.
    { disableYield: true }
  )
  // The interval counts from the start, as from a save: the first settled events do not make an early save.
  const loop = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    lastSaveAt = now
    return forever
  })

  return { save, loop, flush: saveWatermark }
}
