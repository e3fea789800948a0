/**
 * The production wiring of the pump's services against Flowcore, in one visible place: used by the Promise facade and
 * exported for Effect users who want the same composition.
 */
import { Effect, Layer, Logger, References } from "effect"
import { apiKeyAuth, bearerAuth, type FlowcoreConnection, type FlowcoreSource } from "../domain/config.ts"
import type { InvalidOptions } from "../domain/errors.ts"
import { EventBufferLive } from "../layers/buffer/EventBufferLive.ts"
import { FlowcoreHttp } from "../layers/dataSource/FlowcoreHttp.ts"
import { PrometheusMetrics } from "../layers/metrics/Prometheus.ts"
import { NatsNotifier } from "../layers/notifier/Nats.ts"
import { PollerNotifier } from "../layers/notifier/Poller.ts"
import { WebSocketNotifier } from "../layers/notifier/WebSocket.ts"
import type { DataSource } from "../services/DataSource.ts"
import type { EventBuffer } from "../services/EventBuffer.ts"
import type { Notifier } from "../services/Notifier.ts"
import type { PumpMetrics } from "../services/PumpMetrics.ts"
import { userLogger } from "./logger.ts"
import type { FlowcoreDataPumpAuth, FlowcoreDataPumpNotifierOptions, FlowcoreLogger } from "./options.ts"

export interface FlowcoreConnectionInput {
  readonly auth: FlowcoreDataPumpAuth
  readonly dataSource: FlowcoreSource
  readonly noTranslation?: boolean | undefined
  readonly directMode?: boolean | undefined
  readonly baseUrlOverride?: string | undefined
}

/** Turns user auth and routing options into a connection; an invalid API key fails without echoing it. */
export const makeConnection = (input: FlowcoreConnectionInput): Effect.Effect<FlowcoreConnection, InvalidOptions> =>
  Effect.map(
    "getBearerToken" in input.auth
      ? Effect.succeed(bearerAuth(input.auth.getBearerToken))
      : apiKeyAuth(input.auth.apiKey, input.auth.apiKeyId),
    (auth) => ({
      auth,
      source: input.dataSource,
      noTranslation: input.noTranslation ?? false,
      directMode: input.directMode ?? false,
      baseUrlOverride: input.baseUrlOverride?.replace(/\/+$/, "")
    })
  )

/** DataSource over HTTP plus Prometheus metrics labelled for this flow type. */
export const flowcoreSourceLayer = (connection: FlowcoreConnection): Layer.Layer<DataSource | PumpMetrics> => {
  const metrics = PrometheusMetrics.layer({
    tenant: connection.source.tenant,
    dataCore: connection.source.dataCore,
    flowType: connection.source.flowType
  })
  return FlowcoreHttp.layerNode({ connection }).pipe(Layer.provideMerge(metrics))
}

/** The notifier the options ask for (WebSocket by default). */
export const notifierLayer = (
  connection: FlowcoreConnection,
  notifier: FlowcoreDataPumpNotifierOptions | undefined
): Layer.Layer<Notifier, InvalidOptions, DataSource | PumpMetrics> => {
  switch (notifier?.type) {
    case "nats":
      return NatsNotifier.layer({ servers: notifier.servers })
    case "poller":
      return PollerNotifier.layer(notifier.intervalMs === undefined ? {} : { intervalMs: notifier.intervalMs })
    default:
      return WebSocketNotifier.layer({ connection })
  }
}

/** The per-run services: notifier and buffer (the state store is added by the caller). */
export const runLayer = (
  connection: FlowcoreConnection,
  notifier: FlowcoreDataPumpNotifierOptions | undefined
): Layer.Layer<Notifier | EventBuffer, InvalidOptions, DataSource | PumpMetrics> =>
  Layer.mergeAll(notifierLayer(connection, notifier), EventBufferLive)

/** Sends Effect logs to a README-style logger; without one, only warnings and errors are printed. */
export const loggingLayer = (logger: FlowcoreLogger | undefined): Layer.Layer<never> =>
  logger === undefined
    ? Layer.succeed(References.MinimumLogLevel, "Warn")
    : Layer.mergeAll(Logger.layer([userLogger(logger)]), Layer.succeed(References.MinimumLogLevel, "Debug"))

/**
 * Everything a pump needs against Flowcore except the state store: HTTP data source, metrics, the notifier the
 * options name (WebSocket by default) and the buffer. Provide a StateStore layer beside it.
 */
export const flowcoreLayer = (
  input: FlowcoreConnectionInput & { readonly notifier?: FlowcoreDataPumpNotifierOptions | undefined }
): Layer.Layer<DataSource | PumpMetrics | Notifier | EventBuffer, InvalidOptions> =>
  Layer.unwrap(
    Effect.map(makeConnection(input), (connection) =>
      runLayer(connection, input.notifier).pipe(Layer.provideMerge(flowcoreSourceLayer(connection)))
    )
  )
