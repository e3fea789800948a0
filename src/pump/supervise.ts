/**
 * Retry a stage's operation forever with capped backoff, logging once when an outage starts and once when it ends
 * (not once per attempt), and keeping the stage's health current.
 */
import { Clock, Effect, type Schedule } from "effect"
import { describeError, type StageHealth } from "./PumpStatus.ts"

/**
 * `Effect.retry(attempt, policy)`, with the first attempt made outside the retry: setting up a retry costs ~3 us, and
 * these run several times per page while they nearly always succeed at once. After a first failure the retry starts
 * by failing with that same error (without running `attempt` again), so its delays and its `while` are as they were.
 */
const supervisedAttempt = <A, E, R>(
  attempt: Effect.Effect<A, E, R>,
  policy: { readonly schedule: Schedule.Schedule<unknown, unknown>; readonly while?: (error: E) => boolean }
): Effect.Effect<A, E, R> =>
  Effect.catch(attempt, (first) => {
    let replayed = false
    return Effect.retry(
      Effect.suspend(() => {
        if (replayed) return attempt
        replayed = true
        return Effect.fail(first)
      }),
      policy
    )
  })

export const supervised = <A, E, R>(
  stage: StageHealth,
  label: string,
  schedule: Schedule.Schedule<unknown, unknown>,
  effect: Effect.Effect<A, E, R>,
  options?: { readonly onRetry?: (error: E) => void; readonly while?: (error: E) => boolean }
): Effect.Effect<A, E, R> =>
  supervisedAttempt(
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
      )
    ),
    options?.while === undefined ? { schedule } : { schedule, while: options.while }
  ).pipe(
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
