/**
 * EventBuffer: the bounded holding area between fetching and processing. It tracks every event from fetch until it is
 * settled, hands events out as deliveries, re-opens failed ones after a backoff, and computes the checkpoint
 * watermark: the last event of the longest fully settled prefix in fetch order.
 *
 * The service is a factory because the engine builds a fresh buffer for every run generation (start, restart).
 */
import { Context, type Effect, type Schedule, type Scope } from "effect"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { PumpState } from "../domain/PumpState.ts"

export interface BufferConfig {
  /** Events held at most, from the watermark to the newest fetched (settled-but-behind events count too). */
  readonly capacity: number
  /** Deliveries after the first before an event is finally failed; -1 retries forever. */
  readonly maxRedeliveryCount: number
  /** Delays between redeliveries of one event (stepped once per failed delivery, input = the failure). */
  readonly redeliverySchedule: Schedule.Schedule<unknown, unknown>
  /** Called with events that exhausted their redeliveries; they settle only after it returns. */
  readonly onFinalFailure: (events: ReadonlyArray<FlowcoreEvent>, reason: unknown) => Effect.Effect<void>
  /** The checkpoint before anything was settled. */
  readonly initialWatermark: PumpState | undefined
  /**
   * When settled events stop counting against `capacity`: "save" (default) once a save covering them is confirmed
   * with `confirmSaved`, so duplicates after a crash never exceed `capacity`; "settle" at once, for handlers that
   * write the checkpoint themselves (transactional batches).
   */
  readonly releaseOn?: "save" | "settle" | undefined
}

export interface Delivery {
  readonly deliveryId: number
  readonly events: ReadonlyArray<FlowcoreEvent>
  /** Delivery count of each event (1 = first delivery), parallel to `events`. */
  readonly attempts: ReadonlyArray<number>
}

export interface BufferSnapshot {
  /** Events held: open + reserved + waiting for redelivery + settled but not yet covered by a saved checkpoint. */
  readonly held: number
  /** Settled events past the last confirmed save. */
  readonly unsaved: number
  readonly open: number
  readonly reserved: number
  readonly bytes: number
  readonly capacity: number
  readonly acknowledged: number
  readonly failed: number
  readonly redelivered: number
  readonly ignoredAcks: number
  readonly watermark: PumpState | undefined
  /** Increases every time the watermark moves. */
  readonly watermarkVersion: number
  /** Events settled since the buffer was made. */
  readonly settled: number
}

export interface Buffer {
  /** Adds fetched events in fetch order. Never blocks: the fetcher waits for space first (`awaitSpace`). */
  readonly offer: (events: ReadonlyArray<FlowcoreEvent>, sizeBytes: number | undefined) => Effect.Effect<void>
  /** Waits until at least `free` slots are free (or the buffer is closed). */
  readonly awaitSpace: (free: number) => Effect.Effect<void>
  /** Free slots right now. */
  readonly freeSlots: () => number
  /**
   * Hands out up to `max` open events, waiting until at least one exists. Returns an empty delivery once the buffer
   * is closed. With `expiresInMs`, events still reserved after that long count as a failed delivery.
   */
  readonly reserve: (max: number, options?: { readonly expiresInMs?: number | undefined }) => Effect.Effect<Delivery>
  /** Like `reserve`, but returns at once (possibly empty). */
  readonly tryReserve: (max: number) => Delivery
  /**
   * Acknowledge events. With a `deliveryId`, only that delivery's reservation counts (a stale one is ignored).
   * Returns how many were accepted.
   */
  readonly acknowledge: (eventIds: ReadonlyArray<string>, deliveryId?: number) => number
  /** Fail a delivery of events: they re-open after their backoff, or are finally failed. */
  readonly fail: (eventIds: ReadonlyArray<string>, deliveryId?: number, reason?: unknown) => number
  /**
   * Settles reserved events as finally failed right away, for callers that already ran the failed handler
   * themselves (sequential processing retries in place).
   */
  readonly settleFailed: (eventIds: ReadonlyArray<string>, deliveryId?: number) => number
  /** A checkpoint of this watermark version was saved: the events it covers stop counting against capacity. */
  readonly confirmSaved: (watermarkVersion: number) => void
  /** Whether the fetcher waits for free space that settled events past the last confirmed save still hold. */
  readonly fetcherWaitsForSave: () => boolean
  /** Waits until `fetcherWaitsForSave` holds (returns at once if it does, or once the buffer is closed). */
  readonly awaitSaveWanted: Effect.Effect<void>
  /**
   * Waits until the watermark version differs from `seen`, or until the fetcher starts waiting for space that a save
   * would free (`fetcherWaitsForSave`); returns the current version.
   */
  readonly awaitWatermark: (seen: number) => Effect.Effect<number>
  /** Waits until every held event is settled (or the buffer is closed). */
  readonly awaitEmpty: Effect.Effect<void>
  /** Waits until no failed handler (with the final-failure listeners) is running: each settles its events on return. */
  readonly awaitFailedHandlers: Effect.Effect<void>
  readonly snapshot: () => BufferSnapshot
  /** Stops handing out events; pending `reserve` calls return empty deliveries. */
  readonly close: Effect.Effect<void>
}

export class EventBuffer extends Context.Service<
  EventBuffer,
  {
    readonly make: (config: BufferConfig) => Effect.Effect<Buffer, never, Scope.Scope>
  }
>()("@flowcore/data-pump/EventBuffer") {}
