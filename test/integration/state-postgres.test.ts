/**
 * Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth, database `test`); fails when it is missing. Every run
 * works in its own schemas, dropped at the end.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import { PgClient } from "@effect/sql-pg"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { FlowcoreEvent } from "../../src/domain/FlowcoreEvent.ts"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"
import { PostgresStateStore } from "../../src/layers/stateStore/Postgres.ts"
import { transactionalHandler } from "../../src/layers/stateStore/TransactionalHandler.ts"
import { StateStore } from "../../src/services/StateStore.ts"

const connection = { host: "127.0.0.1", port: 5432, database: "test", username: "postgres" } as const
const Pg = PgClient.layer({ ...connection, connectTimeout: "5 seconds" })

const suffix = randomBytes(4).toString("hex")
const schema = `pump_test_${suffix}`
/** Never created by the test: the store has to create it. */
const autoSchema = `pump_test_${suffix}_auto`

/** The client plus this run's schema, so every test fails on its own (not skipped) when the server is missing. */
const TestDb = Layer.effectDiscard(
  SqlClient.SqlClient.use((sql) => sql.unsafe(`CREATE SCHEMA IF NOT EXISTS "${schema}"`))
).pipe(Layer.provideMerge(Pg))

afterAll(() =>
  Effect.runPromise(
    SqlClient.SqlClient.use((sql) =>
      Effect.andThen(
        sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`),
        sql.unsafe(`DROP SCHEMA IF EXISTS "${autoSchema}" CASCADE`)
      )
    ).pipe(Effect.provide(Pg))
  )
)

const at = (iso: string): PumpState => ({
  timeBucket: TimeBucket.fromDate(new Date(iso)),
  eventId: TimeUuid.min(new Date(iso)).toString()
})

const storeLayer = (id: string, options: { readonly table?: string; readonly schema?: string } = {}) =>
  PostgresStateStore.layer({ id, schema, ...options }).pipe(Layer.orDie)

const withStore = <A, E>(
  id: string,
  f: (store: StateStore["Service"]) => Effect.Effect<A, E>,
  options: { readonly table?: string; readonly schema?: string } = {}
) => StateStore.use(f).pipe(Effect.provide(storeLayer(id, options)))

const Row = Schema.Struct({ id: Schema.String, time_bucket: Schema.String, event_id: Schema.NullOr(Schema.String) })

const rowsOf = (qualifiedTable: string) =>
  SqlClient.SqlClient.use((sql) =>
    sql.unsafe(`SELECT id, time_bucket, event_id FROM ${qualifiedTable} ORDER BY id`)
  ).pipe(Effect.flatMap(Schema.decodeUnknownEffect(Schema.Array(Row))))

const closedPort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : -1))
    })
  })

const makeEvent = (iso: string, n: number): FlowcoreEvent => ({
  eventId: TimeUuid.fromDate(new Date(iso)).toString(),
  timeBucket: TimeBucket.fromDate(new Date(iso)),
  tenant: "tenant",
  dataCoreId: "data-core",
  flowType: "orders.0",
  eventType: "order.placed.0",
  metadata: {},
  payload: { n },
  validTime: iso
})

describe("PostgresStateStore", () => {
  it.live("creates its table, returns None before the first save, and round-trips", () =>
    Effect.gen(function* () {
      const id = "round-trip"
      expect(Option.isNone(yield* withStore(id, (store) => store.load))).toBe(true)
      const first = at("2024-03-15T14:10:00Z")
      yield* withStore(id, (store) => store.save(first))
      expect(yield* withStore(id, (store) => store.load)).toEqual(Option.some(first))

      const wholeBucket: PumpState = { timeBucket: TimeBucket.make("20240315150000") }
      yield* withStore(id, (store) => store.save(wholeBucket))
      expect(yield* withStore(id, (store) => store.load)).toEqual(Option.some(wholeBucket))
      expect(yield* rowsOf(`"${schema}"."flowcore_pump_state"`)).toContainEqual({
        id,
        time_bucket: "20240315150000",
        event_id: null
      })
    }).pipe(Effect.provide(TestDb))
  )

  it.live("keeps several pump ids apart in one table under interleaved saves", () =>
    Effect.gen(function* () {
      const table = "shared_state"
      const minutes = Array.from({ length: 30 }, (_, i) => i)
      const stateOf = (pump: "a" | "b", minute: number) =>
        at(`2024-03-15T${pump === "a" ? "10" : "11"}:${String(minute).padStart(2, "0")}:00Z`)
      yield* Effect.all(
        (["a", "b"] as const).map((pump) =>
          withStore(
            `pump-${pump}`,
            (store) => Effect.forEach(minutes, (minute) => store.save(stateOf(pump, minute)), { discard: true }),
            { table }
          )
        ),
        { concurrency: "unbounded" }
      )
      expect(yield* withStore("pump-a", (store) => store.load, { table })).toEqual(Option.some(stateOf("a", 29)))
      expect(yield* withStore("pump-b", (store) => store.load, { table })).toEqual(Option.some(stateOf("b", 29)))
      const rows = yield* rowsOf(`"${schema}"."${table}"`)
      expect(rows.map((row) => row.id)).toEqual(["pump-a", "pump-b"])
    }).pipe(Effect.provide(TestDb))
  )

  it.live("applies concurrent saves of one store in call order", () =>
    Effect.gen(function* () {
      const states = Array.from({ length: 20 }, (_, i) => at(`2024-03-15T09:${String(i).padStart(2, "0")}:00Z`))
      yield* withStore("ordered", (store) =>
        Effect.forEach(states, (state) => store.save(state), { concurrency: "unbounded", discard: true })
      )
      expect(yield* withStore("ordered", (store) => store.load)).toEqual(Option.some(states[19]))
    }).pipe(Effect.provide(TestDb))
  )

  it.live("a row with an invalid bucket or event id is CorruptState naming table and id", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* withStore("corrupt", (store) => store.save(at("2024-03-15T14:10:00Z")))
      const table = `"${schema}"."flowcore_pump_state"`
      const edits: ReadonlyArray<readonly [string, string | null, string]> = [
        ["2024031514", null, "2024031514"],
        ["20240315143000", null, "20240315143000"],
        ["20240315140000", "not-a-uuid", "UUID v1"]
      ]
      for (const [bucket, eventId, problem] of edits) {
        yield* sql.unsafe(`UPDATE ${table} SET time_bucket = $1, event_id = $2 WHERE id = 'corrupt'`, [bucket, eventId])
        const error = yield* Effect.flip(withStore("corrupt", (store) => store.load))
        expect(error._tag).toBe("CorruptState")
        expect(error.message).toContain(table)
        expect(error.message).toContain('"corrupt"')
        expect(error.message).toContain(problem)
        expect(error.message).toContain("Delete that row to start from the live edge")
      }
    }).pipe(Effect.provide(TestDb))
  )

  it.live("creates a missing schema and a custom table", () =>
    Effect.gen(function* () {
      const state = at("2024-03-15T14:10:00Z")
      const options = { schema: autoSchema, table: "My_Pump_State" }
      yield* withStore("auto", (store) => store.save(state), options)
      expect(yield* withStore("auto", (store) => store.load, options)).toEqual(Option.some(state))
      expect(yield* rowsOf(`"${autoSchema}"."My_Pump_State"`)).toHaveLength(1)
    }).pipe(Effect.provide(TestDb))
  )

  it.live("rejects unsafe table and schema names and bad ids with InvalidOptions", () =>
    Effect.gen(function* () {
      const bad = [
        { id: "x", table: 'state"; DROP TABLE users; --' },
        { id: "x", schema: "public.evil" },
        { id: "x", table: "a".repeat(64) },
        { id: "" },
        { id: "x".repeat(256) }
      ]
      for (const options of bad) {
        const error = yield* Effect.flip(Layer.build(PostgresStateStore.layer(options)))
        expect(error._tag).toBe("InvalidOptions")
        expect(error.message).toMatch(/stateStore\.(table|schema|id)/)
      }
      expect(() => transactionalHandler({ id: "x", table: "bad name" }, () => Effect.void)).toThrow(/stateStore.table/)
    }).pipe(Effect.scoped, Effect.provide(TestDb))
  )

  it.live("an unreachable server fails save and load with StateStoreError", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(closedPort)
      const down = PostgresStateStore.layerPg({ ...connection, id: "down", port, connectTimeout: "1 second" })
      const [saveError, loadError] = yield* StateStore.use((store) =>
        Effect.all([Effect.flip(store.save(at("2024-03-15T14:10:00Z"))), Effect.flip(store.load)])
      ).pipe(Effect.provide(down.pipe(Layer.orDie)))
      for (const [error, operation] of [
        [saveError, "save"],
        [loadError, "load"]
      ] as const) {
        if (error._tag !== "StateStoreError") throw new Error(`expected StateStoreError, got ${error._tag}`)
        expect(error.store).toBe("postgres")
        expect(error.operation).toBe(operation)
        expect(error.fatal).not.toBe(true)
        expect(error.message).toContain('"down"')
        expect(error.message).toContain(`127.0.0.1:${port}`)
      }
    })
  )

  it("ships the DDL as a migration file identical to migrationSql()", async () => {
    const file = await fs.readFile(
      new URL("../../src/layers/stateStore/migrations/001_flowcore_pump_state.sql", import.meta.url),
      "utf8"
    )
    expect(PostgresStateStore.migrationSql()).toBe(file)
    expect(PostgresStateStore.migrationSql({ schema: "ops", table: "pumps" })).toContain(
      'CREATE TABLE IF NOT EXISTS "ops"."pumps"'
    )
    expect(() => PostgresStateStore.migrationSql({ table: "x y" })).toThrow(/stateStore.table/)
  })
})

class ProjectionFailed extends Schema.TaggedError<ProjectionFailed>()("ProjectionFailed", {
  message: Schema.String
}) {}

describe("transactionalHandler", () => {
  const projection = `"${schema}"."orders_projection"`
  const checkpointTable = `"${schema}"."flowcore_pump_state"`
  const ensureProjection = SqlClient.SqlClient.use((sql) =>
    sql.unsafe(`CREATE TABLE IF NOT EXISTS ${projection} (event_id TEXT PRIMARY KEY, n INT NOT NULL)`)
  )
  const project = (events: ReadonlyArray<FlowcoreEvent>, sql: SqlClient.SqlClient) =>
    Effect.forEach(
      events,
      (event) =>
        sql.unsafe(`INSERT INTO ${projection} (event_id, n) VALUES ($1, $2)`, [event.eventId, event.payload.n]),
      { discard: true }
    )

  it.live("commits the projection rows and the checkpoint in the same transaction", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* ensureProjection
      const events = [1, 2, 3].map((n) => makeEvent(`2024-03-15T14:0${n}:00Z`, n))
      const handle = transactionalHandler({ id: "projector", schema }, project)
      yield* handle(events)

      const last = events[2]
      expect(yield* withStore("projector", (store) => store.load)).toEqual(
        Option.some({ timeBucket: last?.timeBucket, eventId: last?.eventId })
      )
      const projected = yield* sql.unsafe<{ readonly txid: string }>(`SELECT xmin::text AS txid FROM ${projection}`)
      const checkpoint = yield* sql.unsafe<{ readonly txid: string }>(
        `SELECT xmin::text AS txid FROM ${checkpointTable} WHERE id = 'projector'`
      )
      expect(projected).toHaveLength(3)
      // Rows written by one transaction carry its id in xmin: one commit made them all visible.
      expect(new Set([...projected, ...checkpoint].map((row) => row.txid)).size).toBe(1)
    }).pipe(Effect.provide(TestDb))
  )

  it.live("a handler failing after its inserts rolls back both the rows and the checkpoint", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* ensureProjection
      const id = "failing-projector"
      const committed = [makeEvent("2024-03-15T15:01:00Z", 10)]
      const handle = transactionalHandler({ id, schema }, (events, tx) =>
        Effect.andThen(
          project(events, tx),
          events.length > 1 ? Effect.fail(new ProjectionFailed({ message: "downstream rejected" })) : Effect.void
        )
      )
      yield* handle(committed)
      const checkpointBefore = yield* withStore(id, (store) => store.load)

      const failing = [11, 12].map((n) => makeEvent(`2024-03-15T15:${n}:00Z`, n))
      const exit = yield* Effect.exit(handle(failing))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("downstream rejected")

      const rows = yield* sql.unsafe<{ readonly n: number }>(`SELECT n FROM ${projection} WHERE n >= 10 ORDER BY n`)
      expect(rows.map((row) => row.n)).toEqual([10])
      expect(yield* withStore(id, (store) => store.load)).toEqual(checkpointBefore)
      expect(checkpointBefore).toEqual(
        Option.some({ timeBucket: committed[0]?.timeBucket, eventId: committed[0]?.eventId })
      )
    }).pipe(Effect.provide(TestDb))
  )
})
