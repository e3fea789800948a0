/**
 * Turns the per-run completion logs of one crash scenario into the figures the harness asserts: lost events,
 * duplicates, and duplicates per crash. Pure, so the arithmetic is unit-tested on its own (crash.test.ts).
 *
 * A log line is `<eventId> s` (the handler completed it) or `<eventId> f` (the failed handler completed it). Runs are
 * numbered in start order; run i+1 is the restart after the kill of run i, so an event of run i+1 already logged by
 * an earlier run is a duplicate caused by crash i.
 */

const LINE = /^([0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}) ([sf])$/

export interface ParsedLog {
  readonly handled: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
  /** Lines that are not a complete `<uuid> s|f`: a write cut short would show up here. */
  readonly malformed: number
}

export const parseLog = (text: string): ParsedLog => {
  const handled: Array<string> = []
  const failed: Array<string> = []
  let malformed = 0
  const lines = text.split("\n")
  // Everything before the last "\n" is complete; whatever follows it was not terminated.
  const last = lines.pop()
  if (last !== undefined && last !== "") malformed++
  for (const line of lines) {
    const match = LINE.exec(line)
    if (match === null) {
      malformed++
      continue
    }
    const id = match[1] as string
    if (match[2] === "s") handled.push(id)
    else failed.push(id)
  }
  return { handled, failed, malformed }
}

export interface LogAnalysis {
  readonly ingested: number
  /** Distinct ingested events that reached the success log or the failed log. */
  readonly completed: number
  /** Distinct events completed only through the failed handler. */
  readonly failedOnly: number
  readonly lost: number
  /** Up to 5 lost ids, for the report. */
  readonly lostSample: ReadonlyArray<string>
  /** Completed ids that were never ingested (must be 0: a corrupt log or a foreign event). */
  readonly unknown: number
  readonly lines: number
  /** Lines beyond the first completion of each event. */
  readonly duplicates: number
  /** Events completed twice within one run (no crash in between). */
  readonly inRunDuplicates: number
  /** `perCrash[i]`: events run i+1 completed that an earlier run had already completed. */
  readonly perCrash: ReadonlyArray<number>
  readonly malformed: number
}

export const analyzeLogs = (ingested: ReadonlyArray<string>, runs: ReadonlyArray<ParsedLog>): LogAnalysis => {
  const ingestedSet = new Set(ingested)
  const seen = new Set<string>()
  const handledSet = new Set<string>()
  let lines = 0
  let duplicates = 0
  let inRunDuplicates = 0
  let malformed = 0
  let unknown = 0
  const perCrash: Array<number> = []
  runs.forEach((run, index) => {
    malformed += run.malformed
    const inThisRun = new Set<string>()
    let fromEarlierRuns = 0
    for (const id of [...run.handled, ...run.failed]) {
      lines++
      if (inThisRun.has(id)) {
        inRunDuplicates++
        duplicates++
        continue
      }
      inThisRun.add(id)
      if (seen.has(id)) {
        fromEarlierRuns++
        duplicates++
        continue
      }
      seen.add(id)
      if (!ingestedSet.has(id)) unknown++
    }
    for (const id of run.handled) handledSet.add(id)
    if (index > 0) perCrash.push(fromEarlierRuns)
  })
  const lostIds = ingested.filter((id) => !seen.has(id))
  let failedOnly = 0
  for (const id of seen) if (!handledSet.has(id) && ingestedSet.has(id)) failedOnly++
  return {
    ingested: ingestedSet.size,
    completed: seen.size - unknown,
    failedOnly,
    lost: lostIds.length,
    lostSample: lostIds.slice(0, 5),
    unknown,
    lines,
    duplicates,
    inRunDuplicates,
    perCrash,
    malformed
  }
}

export interface Spread {
  readonly max: number
  readonly avg: number
}

export const spread = (values: ReadonlyArray<number>): Spread =>
  values.length === 0
    ? { max: 0, avg: 0 }
    : { max: Math.max(...values), avg: values.reduce((sum, value) => sum + value, 0) / values.length }
