/**
 * Routes the engine's Effect logs to the README's logger (`debug`, `info`, `warn`, `error(message | Error, metadata)`)
 * at matching levels, with the log annotations and spans as structured metadata.
 */
import { Cause, Logger, References } from "effect"
import type { FlowcoreLogger } from "./options.ts"

const text = (message: unknown): string =>
  Array.isArray(message)
    ? message
        .filter((part) => typeof part !== "object")
        .map(String)
        .join(" ")
    : String(message)

/** Objects passed to Effect.log* after the message become metadata, merged with the annotations. */
const metadataOf = (message: unknown, annotations: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  const metadata: Record<string, unknown> = { ...annotations }
  if (Array.isArray(message)) {
    for (const part of message) if (typeof part === "object" && part !== null) Object.assign(metadata, part)
  }
  return metadata
}

export const userLogger = (logger: FlowcoreLogger) =>
  Logger.make(({ cause, fiber, logLevel, message }) => {
    const line = text(message)
    const metadata = metadataOf(message, fiber.getRef(References.CurrentLogAnnotations))
    const hasCause = cause.reasons.length > 0
    try {
      switch (logLevel) {
        case "Trace":
        case "Debug":
          return logger.debug(line, metadata)
        case "Info":
          return logger.info(line, metadata)
        case "Warn":
          return logger.warn(line, metadata)
        case "Error":
        case "Fatal": {
          const failure = Cause.squash(cause)
          return logger.error(
            hasCause && failure instanceof Error ? failure : line,
            hasCause ? { ...metadata, message: line } : metadata
          )
        }
        default:
          return undefined
      }
    } catch {
      // A throwing user logger must never take the pump down.
      return undefined
    }
  })
