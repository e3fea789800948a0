/**
 * Notifier: tells the engine that new events may exist. Implementations keep one long-lived connection for the life
 * of their layer scope, latch notifications that arrive while nobody waits, and never fail a wait: when their
 * connection is down, `wait` simply runs to its timeout, so the engine degrades to polling.
 */
import { Context, type Duration, type Effect } from "effect"

export type WakeReason = "notified" | "timeout"

export interface NotifierStatus {
  readonly notifier: string
  readonly connected: boolean
  readonly reconnects: number
  /** Epoch ms of the last notification that matched our event types. */
  readonly lastNotificationAt: number | undefined
  /** Epoch ms of the last successful connect. */
  readonly lastConnectedAt: number | undefined
  readonly lastError: string | undefined
}

export class Notifier extends Context.Service<
  Notifier,
  {
    readonly name: string
    /**
     * Returns "notified" as soon as a notification arrived after the previous `wait` returned (at once if one is
     * already latched), or "timeout" after `timeout`. Never fails; interruptible.
     */
    readonly wait: (timeout: Duration.Input) => Effect.Effect<WakeReason>
    readonly status: Effect.Effect<NotifierStatus>
  }
>()("@flowcore/data-pump/Notifier") {}
