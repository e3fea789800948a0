/**
 * Bookkeeping shared by the connection-based notifiers: the latch that wakes waits, the status snapshot, the
 * outage/recovery logging (one Warning per outage, one Info on recovery, however many attempts lie between) and the
 * reconnect metric. Connection code only reports what happened; this decides what to log and count.
 */
import { Clock, Duration, Effect, Schedule } from "effect"
import type { NotifierStatus, WakeReason } from "../../services/Notifier.ts"
import type { PumpMetricsRecorder } from "../../services/PumpMetrics.ts"
import { makeNotificationLatch } from "./NotificationLatch.ts"

export interface ConnectionMonitor {
  /** Called straight from a socket/subscription callback, so a notification can never fall between two waits. */
  readonly notifyUnsafe: () => void
  readonly wait: (timeout: Duration.Input) => Effect.Effect<WakeReason>
  readonly status: Effect.Effect<NotifierStatus>
  /** The connection is up and subscribed. */
  readonly connected: Effect.Effect<void>
  /** A connect attempt failed or an established connection was lost. */
  readonly disconnected: (reason: string) => Effect.Effect<void>
  /** A problem that does not (yet) mean the connection is down. */
  readonly recordError: (reason: string) => void
}

export const makeConnectionMonitor = (notifier: string, metrics: PumpMetricsRecorder): ConnectionMonitor => {
  const latch = makeNotificationLatch()
  let connected = false
  let reconnects = 0
  let lastNotificationAt: number | undefined
  let lastConnectedAt: number | undefined
  let lastError: string | undefined
  // Starts "in outage" only once something failed: a clean first connect is not a recovery.
  let inOutage = false

  const notifyUnsafe = () => {
    lastNotificationAt = Date.now()
    latch.notifyUnsafe()
  }

  const connectedEffect = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const isReconnect = lastConnectedAt !== undefined
    connected = true
    lastConnectedAt = now
    if (isReconnect) {
      reconnects++
      metrics.notifierReconnected()
    }
    if (inOutage) {
      inOutage = false
      yield* Effect.logInfo(`${notifier} notifier connected again; live notifications resume`)
    } else {
      yield* Effect.logDebug(`${notifier} notifier connected`)
    }
  }).pipe(Effect.annotateLogs({ notifier }))

  const disconnected = (reason: string) =>
    Effect.suspend(() => {
      connected = false
      lastError = reason
      if (inOutage) return Effect.void
      inOutage = true
      return Effect.logWarning(
        `${notifier} notifier is not connected (${reason}); waits fall back to their timeout until it reconnects`
      )
    }).pipe(Effect.annotateLogs({ notifier }))

  return {
    notifyUnsafe,
    wait: latch.wait,
    status: Effect.sync(() => ({
      notifier,
      connected,
      reconnects,
      lastNotificationAt,
      lastConnectedAt,
      lastError
    })),
    connected: connectedEffect,
    disconnected,
    recordError: (reason) => {
      lastError = reason
    }
  }
}

/** Exponential backoff with jitter, capped after the jitter so no delay ever exceeds `maxDelayMs`; recurs forever. */
export const reconnectBackoff = (baseDelayMs: number, maxDelayMs: number) =>
  Schedule.exponential(Duration.millis(baseDelayMs)).pipe(Schedule.jittered, (schedule) =>
    Schedule.min([schedule, Schedule.spaced(Duration.millis(maxDelayMs))])
  )
