/**
 * @flowcore/data-pump — public surface. Re-exports only.
 */

// Promise facade (the original README's API)
export { FlowcoreDataPump } from "./compat/FlowcoreDataPump.ts"
export { FlowcoreDataSource, type FlowcoreEventPage } from "./compat/FlowcoreDataSource.ts"
export {
  type FlowcoreConnectionInput,
  flowcoreLayer,
  flowcoreSourceLayer,
  loggingLayer,
  makeConnection,
  notifierLayer,
  runLayer
} from "./compat/layers.ts"
export type {
  FlowcoreDataPumpAuth,
  FlowcoreDataPumpDataSource,
  FlowcoreDataPumpNotifierOptions,
  FlowcoreDataPumpOptions,
  FlowcoreDataPumpProcessor,
  FlowcoreDataPumpState,
  FlowcoreDataPumpStateManager,
  FlowcoreLogger
} from "./compat/options.ts"
export type { FlowcoreAuth, FlowcoreConnection, FlowcoreSource } from "./domain/config.ts"
export { apiKeyAuth, bearerAuth } from "./domain/config.ts"
// Domain
export {
  CorruptState,
  DataSourceError,
  HandlerError,
  InvalidOptions,
  InvalidTimeBucket,
  InvalidTimeUuid,
  NotifierError,
  PumpLifecycleError,
  StateStoreError
} from "./domain/errors.ts"
export { type FlowcoreEvent, FlowcoreEventSchema } from "./domain/FlowcoreEvent.ts"
export { type PumpState, type PumpStateInput, PumpStateSchema } from "./domain/PumpState.ts"
export * as TimeBucket from "./domain/TimeBucket.ts"
export { TimeUuid } from "./domain/TimeUuid.ts"
// Layers
export { EventBufferLive } from "./layers/buffer/EventBufferLive.ts"
export { FlowcoreHttp, type FlowcoreHttpOptions } from "./layers/dataSource/FlowcoreHttp.ts"
export {
  type InMemoryControl,
  InMemoryDataSource,
  type InMemoryEventInput,
  type InMemoryOptions
} from "./layers/dataSource/InMemory.ts"
export { dataPumpPromRegistry, type PrometheusLabels, PrometheusMetrics } from "./layers/metrics/Prometheus.ts"
export { ManualNotifier } from "./layers/notifier/Manual.ts"
export { NatsNotifier, type NatsNotifierOptions } from "./layers/notifier/Nats.ts"
export { PollerNotifier, type PollerNotifierOptions } from "./layers/notifier/Poller.ts"
export { WebSocketNotifier, type WebSocketNotifierOptions } from "./layers/notifier/WebSocket.ts"
export { CallbacksStateStore, type CallbacksStateStoreOptions } from "./layers/stateStore/Callbacks.ts"
export { FileStateStore, type FileStateStoreOptions } from "./layers/stateStore/File.ts"
export { MemoryStateStore } from "./layers/stateStore/Memory.ts"
export { PostgresStateStore, type PostgresStateStoreOptions } from "./layers/stateStore/Postgres.ts"
export { transactionalHandler } from "./layers/stateStore/TransactionalHandler.ts"
// Engine
export * as DataPump from "./pump/DataPump.ts"
export type {
  BatchProcessor,
  EventContext,
  EventProcessor,
  Processor,
  PumpOptions
} from "./pump/PumpOptions.ts"
// Services
export { DataSource, type EventPage, type PageRequest, type ResolvedSource } from "./services/DataSource.ts"
export { type Buffer, type BufferConfig, type Delivery, EventBuffer } from "./services/EventBuffer.ts"
export { Notifier, type NotifierStatus, type WakeReason } from "./services/Notifier.ts"
export { PumpMetrics, type PumpMetricsRecorder } from "./services/PumpMetrics.ts"
export { StateStore } from "./services/StateStore.ts"
