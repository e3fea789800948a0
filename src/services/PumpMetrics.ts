/**
 * PumpMetrics: the engine reports what happens; a layer turns it into Prometheus metrics (or nothing). Calls are
 * plain synchronous functions because they sit on the per-event hot path: implementations must be O(1), never throw
 * and never block. Counts are per event type; the tenant / data core / flow type labels are fixed per pump.
 */
import { Context, Layer } from "effect"

export interface PumpMetricsRecorder {
  /** One HTTP call to Flowcore (label `command`, e.g. "EventList"). */
  readonly commandSent: (command: string) => void
  /** Events fetched into the buffer. */
  readonly pulled: (eventType: string, count: number, bytes: number) => void
  /** Change of events held in the buffer (open + reserved) and their bytes; negative deltas on settle. */
  readonly buffered: (eventType: string, deltaEvents: number, deltaBytes: number) => void
  /** Change of events reserved (handed to a handler or a pull consumer). */
  readonly reserved: (eventType: string, delta: number) => void
  readonly acknowledged: (eventType: string, count: number) => void
  /** Final failures (after the failed handler returned). */
  readonly failed: (eventType: string, count: number) => void
  readonly redelivered: (eventType: string, count: number) => void
  readonly handlerDuration: (seconds: number, outcome: "success" | "failure" | "timeout") => void
  readonly fetchDuration: (seconds: number) => void
  /** Seconds between now and the time of the newest event handed out; 0 when live and idle. */
  readonly lag: (seconds: number) => void
  readonly live: (isLive: boolean) => void
  readonly notifierReconnected: () => void
  readonly checkpointSaved: () => void
  readonly checkpointSaveFailed: () => void
}

/**
 * Counts events per run of one event type (a page rarely mixes them), so that a recorder is called once per run, not
 * once per event: `add` each event's type in order, then `flush` reports the last run.
 */
export const typeRuns = (report: (eventType: string, count: number) => void) => {
  let runType = ""
  let run = 0
  return {
    add: (eventType: string): void => {
      if (eventType !== runType) {
        if (run > 0) report(runType, run)
        runType = eventType
        run = 0
      }
      run++
    },
    flush: (): void => {
      if (run > 0) report(runType, run)
      run = 0
    }
  }
}

const noop = () => {}

export const noopRecorder: PumpMetricsRecorder = {
  commandSent: noop,
  pulled: noop,
  buffered: noop,
  reserved: noop,
  acknowledged: noop,
  failed: noop,
  redelivered: noop,
  handlerDuration: noop,
  fetchDuration: noop,
  lag: noop,
  live: noop,
  notifierReconnected: noop,
  checkpointSaved: noop,
  checkpointSaveFailed: noop
}

export class PumpMetrics extends Context.Service<PumpMetrics, PumpMetricsRecorder>()(
  "@flowcore/data-pump/PumpMetrics"
) {
  /** Records nothing: for tests and for users who do not want metrics. */
  static readonly none = Layer.succeed(PumpMetrics, noopRecorder)
}
