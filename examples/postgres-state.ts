/**
 * The checkpoint in PostgreSQL, with the Effect API: `PostgresStateStore.layerPg` keeps one row per pump id in
 * `flowcore_examples.flowcore_pump_state` (schema and table are created on first use; the row is deleted at exit).
 * Run 1 replays the first half of the history and stops; run 2 builds every layer afresh, as a restarted process
 * would, reads the saved row and resumes right after it. Together they handle every event exactly once.
 *
 * Needs PostgreSQL on 127.0.0.1:5432 (database `test`, user `postgres`, trust auth); fails when it is not there.
 *
 *   node examples/postgres-state.ts [--duration <seconds>]   (ends by itself; --duration caps each run, default 20)
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as FlowcoreEmulator from "../src/emulator/index.ts"
import {
  DataPump,
  type FlowcoreEvent,
  flowcoreSourceLayer,
  makeConnection,
  PostgresStateStore,
  type PumpState,
  runLayer,
  StateStore,
  TimeBucket,
  TimeUuid
} from "../src/index.ts"
import { API_KEY, exampleArgs, HOUR_MS, seedHistory, source } from "./support.ts"

const { durationSeconds } = exampleArgs(20)
// One row per process, removed at the end, so runs of this example never share (or leave behind) a checkpoint.
const table = { id: `postgres-state-example-${process.pid}`, schema: "flowcore_examples" } as const
const postgres = {
  host: "127.0.0.1",
  port: 5432,
  database: "test",
  username: "postgres",
  connectTimeout: "5 seconds"
} as const

const program = Effect.gen(function* () {
  const emulator = yield* FlowcoreEmulator.make()
  const ids = seedHistory(emulator, 400, 4)
  // Run 1 stops at the 200th event: every event id carries its time.
  const middleAt = TimeUuid.fromString(ids[199] as string).getDate()
  yield* Effect.log(`emulator at ${emulator.url} with ${ids.length} historical events`)

  const connection = yield* makeConnection({
    auth: { apiKey: API_KEY },
    dataSource: source,
    baseUrlOverride: emulator.url
  })
  // Built again for every run: a fresh pool, notifier and store, as after a process restart.
  const services = () =>
    Layer.mergeAll(
      runLayer(connection, { type: "websocket" }),
      PostgresStateStore.layerPg({ ...table, ...postgres })
    ).pipe(Layer.provideMerge(flowcoreSourceLayer(connection)))

  // The example's own client, for reading the row as any SQL tool would and for deleting it at the end.
  const sql = yield* SqlClient.SqlClient
  const tableName = sql`${sql(table.schema)}.flowcore_pump_state`
  yield* Effect.addFinalizer(() => sql`DELETE FROM ${tableName} WHERE id = ${table.id}`.pipe(Effect.ignore))
  const savedRow = Effect.map(
    sql<{
      time_bucket: string
      event_id: string | null
    }>`SELECT time_bucket, event_id FROM ${tableName} WHERE id = ${table.id}`,
    (rows) => rows[0]
  )

  /** One pump run until `stopAt`; `from` restarts at a position, otherwise it resumes from the saved row. */
  const run = (label: string, stopAt: Date, from?: PumpState) =>
    Effect.gen(function* () {
      const handled: Array<string> = []
      const store = yield* StateStore
      const saved = yield* store.load
      yield* Effect.log(
        Option.match(saved, {
          onNone: () => `${label}: no saved row`,
          onSome: (state) => `${label}: saved row is ${state.timeBucket}/${state.eventId ?? "(whole bucket)"}`
        })
      )
      const pump = yield* DataPump.make({
        stopAt,
        processor: {
          concurrency: 10,
          handler: (events: ReadonlyArray<FlowcoreEvent>) =>
            Effect.sync(() => {
              for (const event of events) handled.push(event.eventId)
            })
        }
      })
      if (from !== undefined) {
        yield* Effect.log(`${label}: starting from bucket ${from.timeBucket}`)
        yield* pump.restart(from)
      } else {
        yield* Effect.log(
          Option.match(saved, {
            onNone: () => `${label}: starting at the live edge`,
            onSome: (state) => `${label}: resuming from ${state.timeBucket}/${state.eventId ?? "(whole bucket)"}`
          })
        )
        yield* pump.start
      }
      const finished = yield* pump.awaitStopped.pipe(Effect.timeoutOption(Duration.seconds(durationSeconds)))
      if (Option.isNone(finished)) yield* Effect.log(`${label}: --duration ${durationSeconds} reached, stopping`)
      yield* pump.stop
      const row = yield* savedRow
      yield* Effect.log(`${label}: handled ${handled.length} events; row is now ${row?.time_bucket}/${row?.event_id}`)
      return handled
    }).pipe(Effect.scoped, Effect.provide(services()))

  // Run 1 restarts at the start of the history, overwriting whatever row an earlier run of this example left.
  const first = yield* run("run 1", middleAt, { timeBucket: TimeBucket.fromDate(Date.now() - 5 * HOUR_MS) })
  const second = yield* run("run 2", new Date(Date.now() - 5_000))

  const all = [...first, ...second]
  const duplicates = all.length - new Set(all).size
  const missing = ids.filter((id) => !all.includes(id)).length
  yield* Effect.log(
    `run 1 + run 2 handled ${all.length} of ${ids.length} events: ${duplicates} duplicates, ${missing} missing`
  )
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(PgClient.layer(postgres))))
