/**
 * A notifier with no connection: every wait sleeps one polling interval (or less, if the engine's own timeout is
 * shorter) and reports "timeout", so the engine simply re-reads at a steady pace.
 */
import { Duration, Effect, Layer } from "effect"
import { InvalidOptions } from "../../domain/errors.ts"
import { Notifier, type NotifierStatus, type WakeReason } from "../../services/Notifier.ts"

export interface PollerNotifierOptions {
  /** Milliseconds between polls; default 5_000, at least 100. */
  readonly intervalMs?: number
}

const MIN_INTERVAL_MS = 100

const status: NotifierStatus = {
  notifier: "poller",
  connected: true,
  reconnects: 0,
  lastNotificationAt: undefined,
  lastConnectedAt: undefined,
  lastError: undefined
}

const make = (options: PollerNotifierOptions) =>
  Effect.suspend(() => {
    const intervalMs: unknown = options.intervalMs ?? 5_000
    if (typeof intervalMs !== "number" || !Number.isFinite(intervalMs) || intervalMs < MIN_INTERVAL_MS) {
      return Effect.fail(
        InvalidOptions.of("notifier.intervalMs", intervalMs, `a number of milliseconds >= ${MIN_INTERVAL_MS}`)
      )
    }
    const interval = Duration.millis(intervalMs)
    return Effect.succeed(
      Notifier.of({
        name: "poller",
        wait: (timeout) =>
          Effect.sleep(Duration.min(interval, Duration.fromInputUnsafe(timeout))).pipe(
            Effect.as<WakeReason>("timeout")
          ),
        status: Effect.succeed(status)
      })
    )
  })

export const PollerNotifier: {
  readonly layer: (options: PollerNotifierOptions) => Layer.Layer<Notifier, InvalidOptions>
} = {
  layer: (options) => Layer.effect(Notifier, make(options))
}
