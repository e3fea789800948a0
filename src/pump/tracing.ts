/**
 * Spans for the engine's hot paths. The data-first form of `Effect.withSpan` is used on purpose: in effect 4.1 the
 * pipeable form ignores its options and always captures a stack trace, which costs more than the handler call.
 */
import { Effect, Tracer } from "effect"

/**
 * A span around `self`, made only under a real tracer: Effect's default (native) tracer keeps its spans nowhere, and
 * making one costs ~3 us, several times per page (as with handler spans, see Processor).
 */
export const traced =
  (name: string, attributes: Record<string, unknown>) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiber((fiber) =>
      fiber.getRef(Tracer.Tracer) === Tracer.nativeTracer
        ? self
        : Effect.withSpan(self, name, { attributes, captureStackTrace: false })
    )
