/**
 * The checkpoint in a PostgreSQL table (by default `flowcore_pump_state`), one row per pump id, so several pumps
 * (one per event-type group, or one per instance) share one table. The table is created on first use if it is
 * missing; `migrationSql()` (also shipped as `migrations/001_flowcore_pump_state.sql`) gives the DDL for teams that
 * create tables through their own migrations.
 *
 * The store needs a `SqlClient` (`PgClient.layer` from @effect/sql-pg provides one); `layerPg` builds both. A database
 * that cannot be reached fails `load`/`save` with a non-fatal `StateStoreError`, which the engine retries: the layer
 * itself never needs the database to be up, so a pump can start while PostgreSQL is still coming back.
 */

import type { ConnectionOptions } from "node:tls"
import { PgClient } from "@effect/sql-pg"
import { type Duration, Effect, Layer, Option, Redacted, Semaphore } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { CorruptState, InvalidOptions, StateStoreError } from "../../domain/errors.ts"
import type { PumpState } from "../../domain/PumpState.ts"
import { StateStore } from "../../services/StateStore.ts"
import { decodeCheckpoint } from "./CheckpointDecoder.ts"
import {
  makeTableEnsurer,
  migrationSql,
  type PgStateTableOptions,
  resolvePgStateTable,
  selectCheckpoint,
  upsertCheckpoint
} from "./PgStateTable.ts"

export type PostgresStateStoreOptions = PgStateTableOptions

interface PgConnectionTuning {
  readonly ssl?: boolean | ConnectionOptions | undefined
  readonly connectTimeout?: Duration.Input | undefined
  readonly maxConnections?: number | undefined
  /** Shown in `pg_stat_activity`; defaults to `@flowcore/data-pump`. */
  readonly applicationName?: string | undefined
}

/** Where to connect: a connection URL, or its parts. */
export type PgConnectionOptions = PgConnectionTuning &
  (
    | {
        readonly url: string | Redacted.Redacted
        readonly host?: never
        readonly port?: never
        readonly database?: never
        readonly username?: never
        readonly password?: never
      }
    | {
        readonly url?: never
        readonly host?: string | undefined
        readonly port?: number | undefined
        readonly database?: string | undefined
        readonly username?: string | undefined
        readonly password?: string | Redacted.Redacted | undefined
      }
  )

/** SqlError's own message is often just "Failed to connect"; the driver's error says to where and why. */
const describeSqlError = (error: SqlError): string => {
  const underlying: unknown = error.reason.cause
  return underlying instanceof Error && underlying.message !== "" && !error.message.includes(underlying.message)
    ? `${error.message} (${underlying.message})`
    : error.message
}

const toRedacted = (value: string | Redacted.Redacted): Redacted.Redacted =>
  Redacted.isRedacted(value) ? value : Redacted.make(value)

const pgConfig = (options: PgConnectionOptions): PgClient.PgPoolConfig => ({
  applicationName: options.applicationName ?? "@flowcore/data-pump",
  ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
  ...(options.connectTimeout === undefined ? {} : { connectTimeout: options.connectTimeout }),
  ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
  ...(options.url === undefined
    ? {
        host: options.host,
        port: options.port,
        database: options.database,
        username: options.username,
        ...(options.password === undefined ? {} : { password: toRedacted(options.password) })
      }
    : { url: toRedacted(options.url) })
})

export const PostgresStateStore = {
  /** The store over the `SqlClient` in context. Fails with `InvalidOptions` for a bad id, table or schema name. */
  layer(options: PostgresStateStoreOptions): Layer.Layer<StateStore, InvalidOptions, SqlClient.SqlClient> {
    return Layer.effect(
      StateStore,
      Effect.gen(function* () {
        const table = resolvePgStateTable(options)
        if (table instanceof InvalidOptions) return yield* table
        const sql = yield* SqlClient.SqlClient
        const ensureTable = makeTableEnsurer(table)
        // Two saves in flight could commit in either order; one at a time keeps the latest save the one that sticks.
        const saveLock = yield* Semaphore.make(1)
        const where = `table ${table.qualifiedName}, id ${JSON.stringify(table.id)}`
        const spanAttributes = { "state.table": table.qualifiedName, "state.id": table.id }

        const storeError =
          (operation: "load" | "save", what: string) =>
          (cause: SqlError): StateStoreError =>
            new StateStoreError({
              store: "postgres",
              operation,
              message: `PostgreSQL state store: could not ${what} (${where}): ${describeSqlError(cause)}`,
              cause
            })

        const corrupt = (detail: string) =>
          new CorruptState({
            location: where,
            detail,
            message: `Checkpoint row id ${JSON.stringify(table.id)} in table ${table.qualifiedName} is corrupt: ${detail}. Delete that row to start from the live edge, or fix it (time_bucket yyyyMMddHH0000, event_id a version-1 uuid or NULL).`
          })

        const load = ensureTable(sql).pipe(
          Effect.andThen(selectCheckpoint(sql, table)),
          Effect.mapError(storeError("load", "load the checkpoint")),
          Effect.flatMap(
            Option.match({
              onNone: () => Effect.succeedNone,
              onSome: (row) =>
                decodeCheckpoint(
                  { timeBucket: row.time_bucket, ...(row.event_id === null ? {} : { eventId: row.event_id }) },
                  { strict: true }
                ).pipe(Effect.map(Option.some), Effect.mapError(corrupt))
            })
          ),
          Effect.withSpan("PostgresStateStore.load", { attributes: spanAttributes })
        )

        const save = (state: PumpState) =>
          ensureTable(sql).pipe(
            Effect.andThen(upsertCheckpoint(sql, table, state)),
            Effect.mapError(
              storeError("save", `save checkpoint ${state.timeBucket}/${state.eventId ?? "(whole bucket)"}`)
            ),
            saveLock.withPermit,
            Effect.withSpan("PostgresStateStore.save", { attributes: spanAttributes })
          )

        return StateStore.of({ name: "postgres", load, save })
      })
    )
  },

  /**
   * The store plus the PgClient it runs on (also exposed, so `transactionalHandler` and your own queries share the
   * pool). Connections are opened lazily: an unreachable server shows up as failed loads/saves, not a failed layer.
   */
  layerPg(
    options: PostgresStateStoreOptions & PgConnectionOptions
  ): Layer.Layer<StateStore | PgClient.PgClient | SqlClient.SqlClient, InvalidOptions | SqlError> {
    return PostgresStateStore.layer(options).pipe(Layer.provideMerge(PgClient.layer(pgConfig(options))))
  },

  migrationSql
}
