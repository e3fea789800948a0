/**
 * Bookkeeping shared by the connection-based notifiers: the latch that wakes waits, the status snapshot, the
 * outage/recovery logging (one Warning per outage, one Info on recovery, and the attempts between only at Debug) and
 * the reconnect metric. Connection code only reports what happened; this decides what to log and count.
 */
import { Clock, type Duration, Effect, type Schedule } from "effect"
import { cappedBackoff } from "../../domain/backoff.ts"
import type { NotifierError } from "../../domain/errors.ts"
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
      if (inOutage) return Effect.logDebug(`${notifier} notifier still not connected (${reason})`)
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

/** Reconnect delays: the shared capped, jittered exponential backoff; recurs forever. */
export const reconnectBackoff = cappedBackoff

/**
 * Runs a connection session forever: a session that ends (peer closed) or fails is reported to the monitor and
 * started again after the backoff. A throw from the client library is treated like any failure, so the loop can
 * never die silently.
 */
export const runConnectionLoop = <R>(
  session: Effect.Effect<string, NotifierError, R>,
  monitor: ConnectionMonitor,
  backoff: Schedule.Schedule<unknown, unknown>,
  toError: (message: string, cause: unknown) => NotifierError
): Effect.Effect<never, never, R> =>
  session.pipe(
    Effect.catchDefect((defect) =>
      Effect.fail(toError(`unexpected error: ${defect instanceof Error ? defect.message : String(defect)}`, defect))
    ),
    Effect.tap((reason) => monitor.disconnected(reason)),
    Effect.tapError((error) => monitor.disconnected(error.message)),
    Effect.retry(backoff),
    Effect.forever,
    // The backoff never ends, so this is unreachable; it only tells the type system so.
    Effect.orDie
  )
