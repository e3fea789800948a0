/**
 * Append-only NDJSON persistence: one line per created resource and per ingested event, written synchronously so a
 * `ingest` that returned is on disk. On open the file is replayed; a torn last line (a crash mid-write) is dropped
 * with a warning and cut off, so later appends start on a clean line. Any other bad line is an error naming the file
 * and the line number.
 */
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs"
import { Effect, Result, Schema } from "effect"
import { FlowcoreEventFields } from "../domain/FlowcoreEvent.ts"
import { decodeWith, describeProblems, EmulatorError } from "./config.ts"
import type { ResourceLine } from "./registry.ts"
import type { StoredEvent } from "./store.ts"

export type JournalLine =
  | ResourceLine
  | { readonly k: "event"; readonly eventTypeId: string; readonly event: StoredEvent }

const Text = Schema.String.check(Schema.isNonEmpty())

const JournalLineSchema = Schema.Union([
  Schema.Struct({ k: Schema.Literal("tenant"), id: Text, name: Text }),
  Schema.Struct({ k: Schema.Literal("dataCore"), id: Text, tenantId: Text, name: Text, description: Schema.String }),
  Schema.Struct({ k: Schema.Literal("flowType"), id: Text, dataCoreId: Text, name: Text, description: Schema.String }),
  Schema.Struct({
    k: Schema.Literal("eventType"),
    id: Text,
    flowTypeId: Text,
    name: Text,
    description: Schema.String,
    createdAt: Schema.String
  }),
  Schema.Struct({ k: Schema.Literal("event"), eventTypeId: Text, event: FlowcoreEventFields })
])

const decodeLine = decodeWith(JournalLineSchema)

export interface Journal {
  readonly path: string
  /** Appends already-serialised NDJSON (each line ending in "\n"). */
  readonly append: (text: string) => void
  readonly close: () => void
}

export interface Replayed {
  readonly lines: ReadonlyArray<{ readonly line: JournalLine; readonly lineNumber: number }>
}

export const serialize = (line: JournalLine): string => `${JSON.stringify(line)}\n`

/** Reads and validates the whole file; cuts a torn last line off the file. */
export const replay = (path: string): Effect.Effect<Replayed, EmulatorError> =>
  Effect.gen(function* () {
    if (!existsSync(path)) return { lines: [] }
    const text = yield* Effect.try({
      try: () => readFileSync(path, "utf8"),
      catch: (cause) => new EmulatorError({ message: `Cannot read persistence file ${path}: ${String(cause)}`, cause })
    })
    const rows = text.split("\n")
    const endsClean = text.length === 0 || text.endsWith("\n")
    const lines: Array<{ line: JournalLine; lineNumber: number }> = []
    let tornLine: number | undefined
    let validBytes = 0
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i] as string
      const isLast = i === rows.length - 1
      if (isLast && endsClean) break
      const problem = parseRow(row)
      if (typeof problem === "string") {
        if (isLast) {
          tornLine = i + 1
          break
        }
        return yield* new EmulatorError({ message: `Persistence file ${path}, line ${i + 1}: ${problem}` })
      }
      if (problem !== undefined) lines.push({ line: problem, lineNumber: i + 1 })
      validBytes += Buffer.byteLength(row, "utf8") + (isLast ? 0 : 1)
    }
    if (tornLine !== undefined) {
      yield* Effect.logWarning(
        `Persistence file ${path}: line ${tornLine} is incomplete (a write was interrupted); it is ignored and removed`
      )
      yield* Effect.try({
        try: () => {
          const fd = openSync(path, "r+")
          try {
            ftruncateSync(fd, validBytes)
          } finally {
            closeSync(fd)
          }
        },
        catch: (cause) =>
          new EmulatorError({ message: `Cannot truncate persistence file ${path}: ${String(cause)}`, cause })
      })
    } else if (!endsClean) {
      // The last line is complete but unterminated: terminate it so the next append starts a new line.
      yield* Effect.try({
        try: () => {
          const fd = openSync(path, "a")
          try {
            writeSync(fd, "\n")
          } finally {
            closeSync(fd)
          }
        },
        catch: (cause) =>
          new EmulatorError({ message: `Cannot write persistence file ${path}: ${String(cause)}`, cause })
      })
    }
    return { lines }
  })

/** undefined for a blank row, the decoded line, or a description of what is wrong. */
const parseRow = (row: string): JournalLine | string | undefined => {
  if (row.trim() === "") return undefined
  let json: unknown
  try {
    json = JSON.parse(row)
  } catch (cause) {
    return `not valid JSON (${cause instanceof Error ? cause.message : String(cause)})`
  }
  const decoded = decodeLine(json)
  return Result.isSuccess(decoded) ? (decoded.success as JournalLine) : describeProblems(decoded.failure)
}

/** Opens the file for appending (creating it). */
export const openJournal = (path: string): Effect.Effect<Journal, EmulatorError> =>
  Effect.try({
    try: () => {
      const fd = openSync(path, "a")
      let open = true
      return {
        path,
        append: (text: string) => {
          writeSync(fd, text)
        },
        close: () => {
          if (open) {
            open = false
            closeSync(fd)
          }
        }
      }
    },
    catch: (cause) => new EmulatorError({ message: `Cannot open persistence file ${path}: ${String(cause)}`, cause })
  })
