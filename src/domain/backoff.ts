/**
 * The one backoff shape used everywhere (redeliveries, fetch and save supervision, reconnects): exponential from
 * `baseDelayMs`, jittered ×0.8–1.2, with the cap applied after the jitter so no delay ever exceeds `maxDelayMs`.
 */
import { Duration, Schedule } from "effect"

export const cappedBackoff = (baseDelayMs: number, maxDelayMs: number): Schedule.Schedule<unknown, unknown> =>
  Schedule.min([
    Schedule.exponential(Duration.millis(baseDelayMs)).pipe(Schedule.jittered),
    Schedule.spaced(Duration.millis(maxDelayMs))
  ]) as Schedule.Schedule<unknown, unknown>
