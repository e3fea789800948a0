/**
 * A local stand-in for Flowcore (protocol §12): the data API, ingestion, the pump pulse, the `/notifications`
 * WebSocket and optional NATS publishing, on one origin, with fault injection and optional persistence. Point the
 * pump's or the SDK's base URL override at `emulator.url`.
 */
export {
  DEFAULT_API_KEY,
  type EmulatorConfig,
  type EmulatorDataCoreConfig,
  EmulatorError,
  type EmulatorEventTypeConfig,
  type EmulatorFaults,
  type EmulatorFlowTypeConfig,
  type EmulatorTenantConfig,
  loadConfigFile
} from "./config.ts"
export type { IngestInput } from "./core.ts"
export {
  type Emulator,
  type EmulatorIds,
  type EmulatorOptions,
  type EmulatorStats,
  FlowcoreEmulator,
  make,
  start
} from "./emulator.ts"
export { natsSubject } from "./notifications.ts"
