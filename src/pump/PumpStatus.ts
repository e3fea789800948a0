/**
 * The engine's live status, written by its stages as they make progress and read by `snapshot()`. Plain mutable
 * fields: stages run in one JS thread and readers only need a consistent-enough view for health checks.
 */
import type { TimeBucket } from "../domain/TimeBucket.ts"

export interface StageHealth {
  /** Epoch ms of the stage's last success, if any. */
  lastProgressAt: number | undefined
  /** Failures since the last success. */
  consecutiveFailures: number
  lastError: string | undefined
}

export interface PumpStatus {
  generation: number
  running: boolean
  live: boolean
  /** Where the fetcher is reading. */
  fetchBucket: TimeBucket | undefined
  lastFetchedEventId: string | undefined
  pulled: number
  fetchRetries: number
  checkpointSaves: number
  checkpointFailures: number
  startedAt: number | undefined
  lagSeconds: number
  readonly fetching: StageHealth
  readonly notifier: StageHealth
  readonly checkpointing: StageHealth
}

const stage = (): StageHealth => ({ lastProgressAt: undefined, consecutiveFailures: 0, lastError: undefined })

export const makeStatus = (): PumpStatus => ({
  generation: 0,
  running: false,
  live: false,
  fetchBucket: undefined,
  lastFetchedEventId: undefined,
  pulled: 0,
  fetchRetries: 0,
  checkpointSaves: 0,
  checkpointFailures: 0,
  startedAt: undefined,
  lagSeconds: 0,
  fetching: stage(),
  notifier: stage(),
  checkpointing: stage()
})

export const describeError = (error: unknown): string =>
  error instanceof Error ? error.message || error.name : typeof error === "string" ? error : String(error)
