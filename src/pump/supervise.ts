/**
 * Retry a stage's operation forever with capped backoff, logging once when an outage starts and once when it ends
 * (not once per attempt), and keeping the stage's health current.
 */
import { Clock, Effect, type Schedule } from "effect"
import { describeError, type StageHealth } from "./PumpStatus.ts"

export const supervised = <A, E, R>(
  stage: StageHealth,
  label: string,
  schedule: Schedule.Schedule<unknown, unknown>,
  effect: Effect.Effect<A, E, R>,
  options?: { readonly onRetry?: (error: E) => void; readonly while?: (error: E) => boolean }
): Effect.Effect<A, E, R> =>
  effect.pipe(
    Effect.tapError((error) =>
      Effect.suspend(() => {
        stage.consecutiveFailures++
        stage.lastError = describeError(error)
        options?.onRetry?.(error)
        return stage.consecutiveFailures === 1
          ? Effect.logWarning(`${label} failed; retrying with backoff`, { error: stage.lastError })
          : Effect.logDebug(`${label} still failing`, { attempt: stage.consecutiveFailures, error: stage.lastError })
      })
    ),
    Effect.retry(options?.while === undefined ? { schedule } : { schedule, while: options.while }),
    Effect.tap(() =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const failures = stage.consecutiveFailures
        stage.consecutiveFailures = 0
        stage.lastProgressAt = now
        return failures > 0 ? Effect.logInfo(`${label} recovered`, { failedAttempts: failures }) : Effect.void
      })
    )
  )

/** `supervised` with an endless schedule: the operation is retried until it succeeds. */
export const supervisedForever = <A, E, R>(
  stage: StageHealth,
  label: string,
  schedule: Schedule.Schedule<unknown, unknown>,
  effect: Effect.Effect<A, E, R>,
  options?: { readonly onRetry?: (error: E) => void }
): Effect.Effect<A, never, R> => Effect.orDie(supervised(stage, label, schedule, effect, options))
