/**
 * PumpMetrics as Prometheus metrics in one process-wide prom-client registry, `dataPumpPromRegistry`.
 *
 * Every recorder call is a map lookup plus a prom-client update on a labelled child built once per event type.
 * Gauges move by the deltas the engine reports and are never recomputed from the buffer. Each recorder remembers what
 * it added to the buffer gauges so that releasing its layer takes exactly that back out: a stopped pump reports no
 * stale buffer, and another pump with the same labels keeps its own share.
 */
import { Effect, Layer } from "effect"
import { type Counter, type Gauge, Registry } from "prom-client"
import { PumpMetrics, type PumpMetricsRecorder } from "../../services/PumpMetrics.ts"
import { type BatchedSeries, batchedSeries } from "./BatchedHistogram.ts"
import {
  type BaseLabel,
  type EventTypeLabel,
  type MetricFamilies,
  pendingFlushers,
  registerMetricFamilies
} from "./MetricFamilies.ts"

export interface PrometheusLabels {
  readonly tenant: string
  readonly dataCore: string
  readonly flowType: string
}

/** What one pump last reported about its position; the flow type's lag and live gauges aggregate these. */
interface FlowTypeShare {
  lagSeconds: number
  live: boolean
}

const registryKey = Symbol.for("@flowcore/data-pump/prometheus/registry")
const flowTypeSharesKey = Symbol.for("@flowcore/data-pump/prometheus/flow-type-shares/v1")

// Kept on globalThis so that every copy of this module in the process (two installed copies of the package, a test
// runner re-importing it) writes to the same registry and sees the same pumps.
interface ProcessSlots {
  [registryKey]?: Registry
  [flowTypeSharesKey]?: Map<string, Set<FlowTypeShare>>
}
const processSlots = globalThis as ProcessSlots

const processRegistry = (): Registry => {
  const existing = processSlots[registryKey]
  if (existing !== undefined) return existing
  const registry = new Registry()
  processSlots[registryKey] = registry
  return registry
}

const processFlowTypeShares = (): Map<string, Set<FlowTypeShare>> => {
  const existing = processSlots[flowTypeSharesKey]
  if (existing !== undefined) return existing
  const shares = new Map<string, Set<FlowTypeShare>>()
  processSlots[flowTypeSharesKey] = shares
  return shares
}

/**
 * The registry holding every data pump metric of this process. Serve it with
 * `res.set("Content-Type", dataPumpPromRegistry.contentType); res.end(await dataPumpPromRegistry.metrics())`.
 */
export const dataPumpPromRegistry: Registry = processRegistry()

interface EventTypeSeries {
  readonly bufferEvents: Gauge.Internal<EventTypeLabel>
  readonly bufferReservedEvents: Gauge.Internal<EventTypeLabel>
  readonly bufferSizeBytes: Gauge.Internal<EventTypeLabel>
  readonly acknowledged: Counter.Internal
  readonly failed: Counter.Internal
  readonly pulledEvents: Counter.Internal
  readonly pulledBytes: Counter.Internal
  readonly redelivered: Counter.Internal
  /** This recorder's own contribution to the three buffer gauges, taken back out on release. */
  heldEvents: number
  heldReserved: number
  heldBytes: number
  /** Counts not yet handed to prom-client (see `pendingFlushers`). */
  pending: {
    touchedBuffer: boolean
    touchedReserved: boolean
    bufferEvents: number
    bufferBytes: number
    reserved: number
    acknowledged: number
    failed: number
    pulledEvents: number
    pulledBytes: number
    redelivered: number
  }
}

const noPending = () => ({
  touchedBuffer: false,
  touchedReserved: false,
  bufferEvents: 0,
  bufferBytes: 0,
  reserved: 0,
  acknowledged: 0,
  failed: 0,
  pulledEvents: 0,
  pulledBytes: 0,
  redelivered: 0
})

const flushSeries = (s: EventTypeSeries): void => {
  const p = s.pending
  // Gauges that moved show even when their net change since the last scrape is 0 (events came and went).
  if (p.touchedBuffer) {
    s.bufferEvents.inc(p.bufferEvents)
    s.bufferSizeBytes.inc(p.bufferBytes)
  }
  if (p.touchedReserved) s.bufferReservedEvents.inc(p.reserved)
  if (isPositive(p.acknowledged)) s.acknowledged.inc(p.acknowledged)
  if (isPositive(p.failed)) s.failed.inc(p.failed)
  if (isPositive(p.pulledEvents)) s.pulledEvents.inc(p.pulledEvents)
  if (isPositive(p.pulledBytes)) s.pulledBytes.inc(Math.round(p.pulledBytes))
  if (isPositive(p.redelivered)) s.redelivered.inc(p.redelivered)
  s.pending = noPending()
}

// prom-client throws on NaN, on infinities and on negative counter increments; the recorder must never throw.
const isPositive = (n: number): boolean => Number.isFinite(n) && n > 0
const isNonZero = (n: number): boolean => Number.isFinite(n) && n !== 0

const publishFlowType = (
  shares: ReadonlySet<FlowTypeShare>,
  lagSeconds: Gauge.Internal<BaseLabel>,
  live: Gauge.Internal<BaseLabel>
): void => {
  let largestLag = 0
  let allLive = shares.size > 0
  for (const share of shares) {
    if (share.lagSeconds > largestLag) largestLag = share.lagSeconds
    if (!share.live) allLive = false
  }
  lagSeconds.set(largestLag)
  live.set(allLive ? 1 : 0)
}

interface OpenRecorder {
  readonly recorder: PumpMetricsRecorder
  readonly close: () => void
}

const openRecorder = (families: MetricFamilies, labels: PrometheusLabels): OpenRecorder => {
  const base: Record<BaseLabel, string> = {
    tenant: labels.tenant,
    data_core: labels.dataCore,
    flow_type: labels.flowType
  }
  const series = new Map<string, EventTypeSeries>()
  const commands = new Map<string, Counter.Internal>()
  const handlerDuration: Record<"success" | "failure" | "timeout", BatchedSeries> = {
    success: batchedSeries(families.handlerDuration, { ...base, outcome: "success" }),
    failure: batchedSeries(families.handlerDuration, { ...base, outcome: "failure" }),
    timeout: batchedSeries(families.handlerDuration, { ...base, outcome: "timeout" })
  }
  const fetchPageDuration = families.fetchPageDuration.labels(base)
  const lagSeconds = families.lagSeconds.labels(base)
  const live = families.live.labels(base)
  const notifierReconnects = families.notifierReconnects.labels(base)
  const checkpointSaves = families.checkpointSaves.labels(base)
  const checkpointSaveFailures = families.checkpointSaveFailures.labels(base)

  const flowTypeKey = JSON.stringify([labels.tenant, labels.dataCore, labels.flowType])
  const allShares = processFlowTypeShares()
  const share: FlowTypeShare = { lagSeconds: 0, live: false }
  const flowTypeShares = allShares.get(flowTypeKey) ?? new Set<FlowTypeShare>()
  allShares.set(flowTypeKey, flowTypeShares)
  flowTypeShares.add(share)
  publishFlowType(flowTypeShares, lagSeconds, live)

  // Calls that arrive after release (a fiber finishing late) must not bring back the gauges just zeroed.
  let open = true

  // Several calls per event, nearly always for the event type of the call before.
  let lastType: string | undefined
  let lastSeries: EventTypeSeries | undefined
  const seriesFor = (eventType: string): EventTypeSeries => {
    if (eventType === lastType && lastSeries !== undefined) return lastSeries
    const known = series.get(eventType)
    if (known !== undefined) {
      lastType = eventType
      lastSeries = known
      return known
    }
    const eventLabels: Record<EventTypeLabel, string> = { ...base, event_type: eventType }
    const created: EventTypeSeries = {
      bufferEvents: families.bufferEvents.labels(eventLabels),
      bufferReservedEvents: families.bufferReservedEvents.labels(eventLabels),
      bufferSizeBytes: families.bufferSizeBytes.labels(eventLabels),
      acknowledged: families.eventsAcknowledged.labels(eventLabels),
      failed: families.eventsFailed.labels(eventLabels),
      pulledEvents: families.eventsPulled.labels(eventLabels),
      pulledBytes: families.eventsPulledSizeBytes.labels(eventLabels),
      redelivered: families.eventsRedelivered.labels(eventLabels),
      heldEvents: 0,
      heldReserved: 0,
      heldBytes: 0,
      pending: noPending()
    }
    series.set(eventType, created)
    return created
  }

  const recorder: PumpMetricsRecorder = {
    commandSent: (command) => {
      if (!open) return
      let child = commands.get(command)
      if (child === undefined) {
        child = families.sdkCommands.labels({ ...base, command })
        commands.set(command, child)
      }
      child.inc()
    },
    pulled: (eventType, count, bytes) => {
      if (!open) return
      const p = seriesFor(eventType).pending
      if (isPositive(count)) p.pulledEvents += count
      if (isPositive(bytes)) p.pulledBytes += bytes
    },
    buffered: (eventType, deltaEvents, deltaBytes) => {
      if (!open) return
      const s = seriesFor(eventType)
      if (isNonZero(deltaEvents) || isNonZero(deltaBytes)) s.pending.touchedBuffer = true
      if (isNonZero(deltaEvents)) {
        s.pending.bufferEvents += deltaEvents
        s.heldEvents += deltaEvents
      }
      if (isNonZero(deltaBytes)) {
        s.pending.bufferBytes += deltaBytes
        s.heldBytes += deltaBytes
      }
    },
    reserved: (eventType, delta) => {
      if (!open || !isNonZero(delta)) return
      const s = seriesFor(eventType)
      s.pending.reserved += delta
      s.pending.touchedReserved = true
      s.heldReserved += delta
    },
    acknowledged: (eventType, count) => {
      if (open && isPositive(count)) seriesFor(eventType).pending.acknowledged += count
    },
    failed: (eventType, count) => {
      if (open && isPositive(count)) seriesFor(eventType).pending.failed += count
    },
    redelivered: (eventType, count) => {
      if (open && isPositive(count)) seriesFor(eventType).pending.redelivered += count
    },
    handlerDuration: (seconds, outcome) => {
      if (open && Number.isFinite(seconds)) handlerDuration[outcome].observe(Math.max(0, seconds))
    },
    fetchDuration: (seconds) => {
      if (open && Number.isFinite(seconds)) fetchPageDuration.observe(Math.max(0, seconds))
    },
    lag: (seconds) => {
      if (!open || Number.isNaN(seconds)) return
      // A newest event stamped after "now" (clock skew between Flowcore and this host) means no lag, not negative lag.
      share.lagSeconds = Math.max(0, seconds)
      publishFlowType(flowTypeShares, lagSeconds, live)
    },
    live: (isLive) => {
      if (!open) return
      share.live = isLive
      publishFlowType(flowTypeShares, lagSeconds, live)
    },
    notifierReconnected: () => {
      if (open) notifierReconnects.inc()
    },
    checkpointSaved: () => {
      if (open) checkpointSaves.inc()
    },
    checkpointSaveFailed: () => {
      if (open) checkpointSaveFailures.inc()
    }
  }

  const flush = () => {
    for (const s of series.values()) flushSeries(s)
    for (const outcome of Object.values(handlerDuration)) outcome.flush()
  }
  pendingFlushers().add(flush)

  const close = (): void => {
    if (!open) return
    open = false
    flush()
    pendingFlushers().delete(flush)
    for (const s of series.values()) {
      if (s.heldEvents !== 0) s.bufferEvents.dec(s.heldEvents)
      if (s.heldReserved !== 0) s.bufferReservedEvents.dec(s.heldReserved)
      if (s.heldBytes !== 0) s.bufferSizeBytes.dec(s.heldBytes)
      s.heldEvents = 0
      s.heldReserved = 0
      s.heldBytes = 0
    }
    flowTypeShares.delete(share)
    if (flowTypeShares.size === 0 && allShares.get(flowTypeKey) === flowTypeShares) allShares.delete(flowTypeKey)
    publishFlowType(flowTypeShares, lagSeconds, live)
  }

  return { recorder, close }
}

export const PrometheusMetrics = {
  /**
   * A recorder bound to one pump's tenant, data core and flow type. Releasing the layer takes the pump's buffer out of
   * the gauges and drops it from the flow type's lag and live gauges; counters keep their totals.
   */
  layer: (labels: PrometheusLabels): Layer.Layer<PumpMetrics> =>
    Layer.effect(
      PumpMetrics,
      Effect.acquireRelease(
        // Resolved on every build, not once per module, so a pump started after `dataPumpPromRegistry.clear()`
        // registers the families again instead of writing to detached metrics.
        Effect.sync(() => openRecorder(registerMetricFamilies(dataPumpPromRegistry), labels)),
        (opened) => Effect.sync(opened.close)
      ).pipe(Effect.map((opened) => PumpMetrics.of(opened.recorder)))
    )
}
