/**
 * One run of the pump under the crash harness: the production wiring (FlowcoreHttp against the emulator, the
 * WebSocket notifier, the live buffer) with a File or PostgreSQL state store. The harness SIGKILLs it at random
 * instants and starts it again; only the final run (which gets a `stopAt`) ends by itself.
 *
 *   node test/crash/pump-child.ts '<ChildConfig as JSON>'
 *
 * Every event a handler completes is written to the run's log with a synchronous `write` on an fd opened with 'a'
 * before the handler returns, so an event is on disk before the engine can acknowledge it. A SIGKILL therefore can
 * never make an acknowledged event disappear from the log; it can only leave events completed but not checkpointed,
 * which the next run delivers again (the duplicates the harness counts).
 */
import * as fs from "node:fs"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { PgClient } from "@effect/sql-pg"
import { Console, Data, Effect, Layer, Option, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { flowcoreSourceLayer, loggingLayer, makeConnection, runLayer } from "../../src/compat/layers.ts"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import { FileStateStore } from "../../src/layers/stateStore/File.ts"
import { PostgresStateStore } from "../../src/layers/stateStore/Postgres.ts"
import { transactionalHandler } from "../../src/layers/stateStore/TransactionalHandler.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import type { Processor } from "../../src/pump/PumpOptions.ts"
import { StateStore } from "../../src/services/StateStore.ts"
import {
  type ChildConfig,
  ChildConfigJson,
  PROJECTION_TABLE,
  postgres,
  STARTED_LINE,
  type StoreConfig,
  seededRandom
} from "./ChildConfig.ts"

/** A failure the harness injected on purpose; the engine retries it like any handler failure. */
class InjectedFailure extends Data.TaggedError("InjectedFailure")<{ readonly eventIds: ReadonlyArray<string> }> {}

/** Appends lines with one synchronous write each: on disk (in the page cache) before the caller goes on. */
const openLog = (path: string) => {
  const fd = fs.openSync(path, "a")
  return (events: ReadonlyArray<FlowcoreEvent>, kind: "s" | "f") =>
    Effect.sync(() => {
      fs.writeSync(fd, events.map((event) => `${event.eventId} ${kind}\n`).join(""))
    })
}

/**
 * Records how long each checkpoint save took. The saved checkpoint trails the in-memory watermark by one save, so
 * the harness needs these figures to explain the duplicates of a crash that landed during a slow save.
 */
const timedSaves = (path: string) =>
  Layer.effect(
    StateStore,
    Effect.gen(function* () {
      const inner = yield* StateStore
      const fd = fs.openSync(path, "a")
      return StateStore.of({
        name: inner.name,
        load: inner.load,
        save: (state) =>
          Effect.suspend(() => {
            const began = performance.now()
            return inner.save(state).pipe(
              Effect.tap(() =>
                Effect.sync(() => {
                  const took = (performance.now() - began).toFixed(1)
                  fs.writeSync(fd, `${Math.round(began)} ${took} ${state.eventId ?? state.timeBucket}\n`)
                })
              )
            )
          })
      })
    })
  )

/**
 * The store the pump sees is the timed one; the real store stays private behind it. Only the PostgreSQL variant
 * provides the SqlClient, and only the transactional handler (which requires that variant) uses it.
 */
const storeLayer = (store: StoreConfig, savesPath: string) =>
  store.type === "file"
    ? timedSaves(savesPath).pipe(Layer.provide(FileStateStore.layer({ path: store.path })))
    : timedSaves(savesPath).pipe(
        Layer.provide(PostgresStateStore.layer({ id: store.id, schema: store.schema })),
        // The same pool serves the store and, in transactional mode, the handler's transactions.
        Layer.provideMerge(PgClient.layer({ ...postgres, maxConnections: 4 }))
      )

const processorFor = (config: ChildConfig, log: ReturnType<typeof openLog>): Processor<SqlClient.SqlClient> => {
  const random = seededRandom(config.seed)
  const traceFd = config.tracePath === undefined ? undefined : fs.openSync(config.tracePath, "a")
  const trace = (events: ReadonlyArray<FlowcoreEvent>, tag: string) => {
    if (traceFd !== undefined) fs.writeSync(traceFd, events.map((event) => `${event.eventId} ${tag}\n`).join(""))
  }
  const fails = () => random() < config.failureRate
  const failedHandler = (events: ReadonlyArray<FlowcoreEvent>) => log(events, "f")
  switch (config.mode) {
    case "event":
      return {
        concurrency: config.concurrency,
        handleEvent: (event, { attempt }) =>
          Effect.suspend(() => {
            trace([event], `d${attempt}`)
            if (!fails()) return log([event], "s")
            trace([event], "x")
            return Effect.fail(new InjectedFailure({ eventIds: [event.eventId] }))
          }),
        failedHandler
      }
    case "batch":
      return {
        concurrency: config.concurrency,
        handler: (events) =>
          Effect.suspend(() => {
            trace(events, "d")
            if (!fails()) return log(events, "s")
            trace(events, "x")
            return Effect.fail(new InjectedFailure({ eventIds: events.map((e) => e.eventId) }))
          }),
        failedHandler
      }
    case "transactional": {
      if (config.store.type !== "postgres") throw new Error("transactional mode needs the postgres store")
      const { id, schema } = config.store
      const violations = fs.openSync(config.violationsPath, "a")
      const projection = `"${schema}"."${PROJECTION_TABLE}"`
      return {
        concurrency: config.concurrency,
        sequential: true,
        // No ON CONFLICT: a committed event delivered again fails the insert, is recorded, and stays visible.
        handler: transactionalHandler({ id, schema }, (events, sql) =>
          sql
            .unsafe(
              `INSERT INTO ${projection} (event_id) VALUES ${events.map((_, i) => `($${i + 1})`).join(", ")}`,
              events.map((event) => event.eventId)
            )
            .pipe(
              Effect.tapError((error) =>
                error.reason._tag === "UniqueViolation"
                  ? Effect.sync(() => {
                      const detail = String((error.reason.cause as { detail?: unknown } | undefined)?.detail ?? "")
                      fs.writeSync(
                        violations,
                        `${JSON.stringify({ detail, eventIds: events.map((e) => e.eventId) })}\n`
                      )
                    })
                  : Effect.void
              ),
              // Failing after the insert makes the rollback do real work: the retried batch inserts the same rows.
              Effect.andThen(
                Effect.suspend(() =>
                  fails() ? Effect.fail(new InjectedFailure({ eventIds: events.map((e) => e.eventId) })) : Effect.void
                )
              )
            )
        ),
        failedHandler
      }
    }
  }
}

const program = Effect.gen(function* () {
  const raw = process.argv[2]
  const config = yield* Schema.decodeUnknownEffect(ChildConfigJson)(raw)
  const connection = yield* makeConnection({
    auth: { apiKey: "fc_emulator_secret" },
    dataSource: config.source,
    baseUrlOverride: config.url
  })
  const log = openLog(config.logPath)
  const processor = processorFor(config, log)
  const store = storeLayer(config.store, config.savesPath)
  const layer = Layer.mergeAll(runLayer(connection, undefined), store).pipe(
    Layer.provideMerge(flowcoreSourceLayer(connection)),
    Layer.provideMerge(loggingLayer(undefined))
  )
  yield* Effect.gen(function* () {
    const pump = yield* DataPump.make({
      bufferSize: config.bufferSize,
      maxRedeliveryCount: config.maxRedeliveryCount,
      // Short backoffs keep redeliveries inside one ~1 s run, so kills also hit events between retries.
      redelivery: { baseDelayMs: 20, maxDelayMs: 200 },
      processor,
      ...(config.stopAt === undefined ? {} : { stopAt: new Date(config.stopAt) })
    })
    const saved = yield* StateStore.use((store) => store.load)
    if (Option.isNone(saved)) yield* pump.restart({ timeBucket: config.fromTimeBucket })
    else yield* pump.start
    yield* Console.log(STARTED_LINE)
    yield* pump.awaitStopped
  }).pipe(Effect.scoped, Effect.provide(layer))
})

NodeRuntime.runMain(program)
