/**
 * The pump's Prometheus metric families and their registration. A family is registered once per registry and reused
 * afterwards, so a second copy of this module (two installed copies of the package, a test runner re-importing it)
 * or any number of pumps never trips prom-client's "metric already registered" error.
 */
import { Result, Schema } from "effect"
import { Counter, Gauge, Histogram, type Registry } from "prom-client"

export const baseLabelNames = ["tenant", "data_core", "flow_type"] as const
const eventTypeLabelNames = [...baseLabelNames, "event_type"] as const
const commandLabelNames = [...baseLabelNames, "command"] as const
const outcomeLabelNames = [...baseLabelNames, "outcome"] as const

export type BaseLabel = (typeof baseLabelNames)[number]
export type EventTypeLabel = (typeof eventTypeLabelNames)[number]
export type CommandLabel = (typeof commandLabelNames)[number]
export type OutcomeLabel = (typeof outcomeLabelNames)[number]

export interface MetricFamilies {
  readonly bufferEvents: Gauge<EventTypeLabel>
  readonly bufferReservedEvents: Gauge<EventTypeLabel>
  readonly bufferSizeBytes: Gauge<EventTypeLabel>
  readonly eventsAcknowledged: Counter<EventTypeLabel>
  readonly eventsFailed: Counter<EventTypeLabel>
  readonly eventsPulledSizeBytes: Counter<EventTypeLabel>
  readonly sdkCommands: Counter<CommandLabel>
  readonly eventsPulled: Counter<EventTypeLabel>
  readonly eventsRedelivered: Counter<EventTypeLabel>
  readonly handlerDuration: Histogram<OutcomeLabel>
  readonly fetchPageDuration: Histogram<BaseLabel>
  readonly lagSeconds: Gauge<BaseLabel>
  readonly live: Gauge<BaseLabel>
  readonly notifierReconnects: Counter<BaseLabel>
  readonly checkpointSaves: Counter<BaseLabel>
  readonly checkpointSaveFailures: Counter<BaseLabel>
}

// Handlers range from sub-millisecond projections to calls that approach a typical 30-60 s timeout.
const handlerDurationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
// One page is one HTTP round trip: tens of milliseconds normally, seconds when Flowcore is slow or retrying.
const fetchPageDurationBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

type MetricKind = "counter" | "gauge" | "histogram"

interface Definition<L extends string> {
  readonly name: string
  readonly help: string
  readonly labelNames: ReadonlyArray<L>
}

/** What prom-client keeps on every metric instance; read structurally because the instance may come from another copy. */
const RegisteredShape = Schema.Struct({
  type: Schema.String,
  labelNames: Schema.Array(Schema.String)
})
const decodeRegisteredShape = Schema.decodeUnknownResult(RegisteredShape)

const sameLabels = (found: ReadonlyArray<string>, expected: ReadonlyArray<string>): boolean =>
  found.length === expected.length && expected.every((label) => found.includes(label))

const reuseOrRegister = <M, L extends string>(
  registry: Registry,
  kind: MetricKind,
  definition: Definition<L>,
  register: () => M
): M => {
  const existing = registry.getSingleMetric(definition.name)
  if (existing === undefined) return register()
  const shape = decodeRegisteredShape(existing)
  if (
    Result.isFailure(shape) ||
    shape.success.type !== kind ||
    !sameLabels(shape.success.labelNames, definition.labelNames)
  ) {
    const found = Result.isSuccess(shape)
      ? `a ${shape.success.type} with labels [${shape.success.labelNames.join(", ")}]`
      : "an object that is not a prom-client metric"
    throw new Error(
      `Prometheus metric "${definition.name}" is already registered as ${found}; ` +
        `@flowcore/data-pump needs a ${kind} with labels [${definition.labelNames.join(", ")}]`
    )
  }
  // Checked above by kind and labels. `instanceof` cannot be used: the metric may have been built by another copy of
  // prom-client that registered it first.
  return existing as unknown as M
}

const pendingFlushersKey = Symbol.for("@flowcore/data-pump/prometheus/pending-flushers/v1")
const slots = globalThis as { [pendingFlushersKey]?: Set<() => void> }

/**
 * Recorders keep per-event counts in plain numbers and hand them to prom-client only when metrics are read: a
 * prom-client update hashes its labels on every call, which on the per-event path cost more than the event itself.
 * Shared through globalThis so every copy of this module flushes every recorder.
 */
export const pendingFlushers = (): Set<() => void> => {
  slots[pendingFlushersKey] ??= new Set()
  return slots[pendingFlushersKey]
}

/** Runs before any family is read (prom-client calls `collect` on scrape), so a scrape sees every count. */
function collect(): void {
  for (const flush of pendingFlushers()) flush()
}

const counter = <L extends string>(registry: Registry, definition: Definition<L>): Counter<L> =>
  reuseOrRegister(
    registry,
    "counter",
    definition,
    () => new Counter({ ...definition, labelNames: definition.labelNames, registers: [registry], collect })
  )

const gauge = <L extends string>(registry: Registry, definition: Definition<L>): Gauge<L> =>
  reuseOrRegister(
    registry,
    "gauge",
    definition,
    () => new Gauge({ ...definition, labelNames: definition.labelNames, registers: [registry], collect })
  )

const histogram = <L extends string>(
  registry: Registry,
  definition: Definition<L>,
  buckets: Array<number>
): Histogram<L> =>
  reuseOrRegister(
    registry,
    "histogram",
    definition,
    () => new Histogram({ ...definition, labelNames: definition.labelNames, buckets, registers: [registry], collect })
  )

/**
 * Finds or registers every family in `registry`. Throws only when a same-named metric of another kind or label set is
 * already registered, which no amount of reuse can reconcile.
 */
export const registerMetricFamilies = (registry: Registry): MetricFamilies => ({
  bufferEvents: gauge(registry, {
    name: "flowcore_data_pump_buffer_events_gauge",
    help: "Events held in the buffer (open and reserved)",
    labelNames: eventTypeLabelNames
  }),
  bufferReservedEvents: gauge(registry, {
    name: "flowcore_data_pump_buffer_reserved_events_gauge",
    help: "Events reserved by a handler or a pull consumer",
    labelNames: eventTypeLabelNames
  }),
  bufferSizeBytes: gauge(registry, {
    name: "flowcore_data_pump_buffer_size_bytes_gauge",
    help: "Bytes of the events held in the buffer",
    labelNames: eventTypeLabelNames
  }),
  eventsAcknowledged: counter(registry, {
    name: "flowcore_data_pump_events_acknowledged_counter",
    help: "Events processed successfully",
    labelNames: eventTypeLabelNames
  }),
  eventsFailed: counter(registry, {
    name: "flowcore_data_pump_events_failed_counter",
    help: "Events that finally failed after their last redelivery",
    labelNames: eventTypeLabelNames
  }),
  eventsPulledSizeBytes: counter(registry, {
    name: "flowcore_data_pump_events_pulled_size_bytes_counter",
    help: "Bytes of events fetched from Flowcore",
    labelNames: eventTypeLabelNames
  }),
  sdkCommands: counter(registry, {
    name: "flowcore_data_pump_sdk_commands_counter",
    help: "HTTP calls made to Flowcore",
    labelNames: commandLabelNames
  }),
  eventsPulled: counter(registry, {
    name: "flowcore_data_pump_events_pulled_counter",
    help: "Events fetched from Flowcore",
    labelNames: eventTypeLabelNames
  }),
  eventsRedelivered: counter(registry, {
    name: "flowcore_data_pump_events_redelivered_counter",
    help: "Events handed out again after a failed or timed-out delivery",
    labelNames: eventTypeLabelNames
  }),
  handlerDuration: histogram(
    registry,
    {
      name: "flowcore_data_pump_handler_duration_seconds",
      help: "Duration of one handler call, by outcome (success, failure, timeout)",
      labelNames: outcomeLabelNames
    },
    handlerDurationBuckets
  ),
  fetchPageDuration: histogram(
    registry,
    {
      name: "flowcore_data_pump_fetch_page_duration_seconds",
      help: "Time the fetch loop waited for one page of events, retries included (a page read ahead, or a part of a page read whole: its decoding)",
      labelNames: baseLabelNames
    },
    fetchPageDurationBuckets
  ),
  lagSeconds: gauge(registry, {
    name: "flowcore_data_pump_lag_seconds_gauge",
    help: "Seconds between now and the newest event handed out (0 when live and idle); the largest over the pumps of a flow type",
    labelNames: baseLabelNames
  }),
  live: gauge(registry, {
    name: "flowcore_data_pump_live_gauge",
    help: "1 while every pump of the flow type follows the live edge, 0 while one of them catches up or none runs",
    labelNames: baseLabelNames
  }),
  notifierReconnects: counter(registry, {
    name: "flowcore_data_pump_notifier_reconnects_counter",
    help: "Reconnections of the live notifier (WebSocket or NATS)",
    labelNames: baseLabelNames
  }),
  checkpointSaves: counter(registry, {
    name: "flowcore_data_pump_checkpoint_saves_counter",
    help: "Checkpoints saved to the state store",
    labelNames: baseLabelNames
  }),
  checkpointSaveFailures: counter(registry, {
    name: "flowcore_data_pump_checkpoint_save_failures_counter",
    help: "Failed attempts to save a checkpoint",
    labelNames: baseLabelNames
  })
})
