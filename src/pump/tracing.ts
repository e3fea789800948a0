/**
 * Spans for the engine's hot paths. The data-first form of `Effect.withSpan` is used on purpose: in effect 4.1 the
 * pipeable form ignores its options and always captures a stack trace, which costs more than the handler call.
 */
import { Effect } from "effect"

export const traced =
  (name: string, attributes: Record<string, unknown>) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withSpan(self, name, { attributes, captureStackTrace: false })
