/**
 * The `flowcore_pump_state` table: one row per pump id, shared by every pump (one per event-type group) that points
 * at it. Shared by `PostgresStateStore` and `transactionalHandler` so both read and write the very same row shape.
 *
 * Table and schema names are validated against a conservative identifier pattern before they are ever placed into
 * SQL, and then double-quoted; the pump id and the checkpoint are always bound parameters.
 */
import { Effect, Option, Semaphore } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { InvalidOptions } from "../../domain/errors.ts"

export interface PgStateTableOptions {
  /** The pump's id: the row key. Give each pump sharing a table its own id. */
  readonly id: string
  /** Defaults to `flowcore_pump_state`. */
  readonly table?: string | undefined
  /** Defaults to the connection's `search_path` (normally `public`). Created if it does not exist. */
  readonly schema?: string | undefined
}

const DEFAULT_TABLE = "flowcore_pump_state"
const MAX_ID_LENGTH = 255

const IDENTIFIER = /^[a-zA-Z_][a-zA-Z0-9_]{0,62}$/

export interface PgStateTable {
  readonly id: string
  readonly schema: string | undefined
  readonly table: string
  /** The quoted, schema-qualified name, safe to splice into SQL. */
  readonly qualifiedName: string
}

const quote = (identifier: string) => `"${identifier}"`

const checkIdentifier = (field: string, value: unknown): InvalidOptions | undefined =>
  typeof value === "string" && IDENTIFIER.test(value)
    ? undefined
    : InvalidOptions.of(
        field,
        value,
        "a PostgreSQL identifier: a letter or underscore, then up to 62 letters, digits or underscores"
      )

const checkNames = (options: {
  readonly table?: string | undefined
  readonly schema?: string | undefined
}):
  | InvalidOptions
  | { readonly table: string; readonly schema: string | undefined; readonly qualifiedName: string } => {
  const table = options.table ?? DEFAULT_TABLE
  const tableProblem = checkIdentifier("stateStore.table", table)
  if (tableProblem !== undefined) return tableProblem
  if (options.schema !== undefined) {
    const schemaProblem = checkIdentifier("stateStore.schema", options.schema)
    if (schemaProblem !== undefined) return schemaProblem
  }
  const qualifiedName = options.schema === undefined ? quote(table) : `${quote(options.schema)}.${quote(table)}`
  return { table, schema: options.schema, qualifiedName }
}

/** Validates the options; the result is the only thing the SQL below accepts, so nothing unchecked reaches it. */
export const resolvePgStateTable = (options: PgStateTableOptions): InvalidOptions | PgStateTable => {
  if (typeof options.id !== "string" || options.id.length === 0 || options.id.length > MAX_ID_LENGTH) {
    return InvalidOptions.of("stateStore.id", options.id, `a non-empty string of at most ${MAX_ID_LENGTH} characters`)
  }
  const names = checkNames(options)
  return names instanceof InvalidOptions ? names : { id: options.id, ...names }
}

/** `CREATE TABLE IF NOT EXISTS` for the checkpoint table, as shipped in `migrations/001_flowcore_pump_state.sql`. */
export const createTableSql = (qualifiedName: string): string =>
  `-- Checkpoints of @flowcore/data-pump: one row per pump id.
CREATE TABLE IF NOT EXISTS ${qualifiedName} (
  id VARCHAR(${MAX_ID_LENGTH}) PRIMARY KEY,
  time_bucket VARCHAR(14) NOT NULL,
  event_id VARCHAR(255),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
`

/**
 * The DDL of the checkpoint table, for running through your own migration tool. Throws `InvalidOptions` when
 * `table` or `schema` is not a plain identifier.
 */
export const migrationSql = (
  options: { readonly table?: string | undefined; readonly schema?: string | undefined } = {}
): string => {
  const names = checkNames(options)
  if (names instanceof InvalidOptions) throw names
  return createTableSql(names.qualifiedName)
}

/**
 * Creates the table (and its schema) unless it exists. Existence is checked first so a role without CREATE
 * privilege can still use a table made by a migration; creation runs under an advisory lock because two pumps
 * racing on `CREATE TABLE IF NOT EXISTS` can otherwise fail with a duplicate-key error in the catalog.
 */
const ensureTable = (sql: SqlClient.SqlClient, table: PgStateTable): Effect.Effect<void, SqlError> =>
  Effect.gen(function* () {
    const raw = sql.withoutTransforms()
    const exists = yield* raw<{
      readonly found: boolean
    }>`SELECT to_regclass(${table.qualifiedName}::text) IS NOT NULL AS found`
    if (exists[0]?.found === true) return
    yield* raw.withTransaction(
      Effect.gen(function* () {
        yield* raw`SELECT pg_advisory_xact_lock(hashtext(${`@flowcore/data-pump:${table.qualifiedName}`}))`
        if (table.schema !== undefined) {
          const schemas = yield* raw`SELECT 1 FROM pg_namespace WHERE nspname = ${table.schema}`
          if (schemas.length === 0) yield* raw.unsafe(`CREATE SCHEMA IF NOT EXISTS ${quote(table.schema)}`)
        }
        yield* raw.unsafe(createTableSql(table.qualifiedName))
      })
    )
  })

/** Runs `ensureTable` until it succeeds once; concurrent first callers share one attempt, failures are retried. */
export const makeTableEnsurer = (
  table: PgStateTable
): ((sql: SqlClient.SqlClient) => Effect.Effect<void, SqlError>) => {
  let ensured = false
  const lock = Semaphore.makeUnsafe(1)
  return (sql) =>
    Effect.suspend(() =>
      ensured
        ? Effect.void
        : lock.withPermit(
            Effect.suspend(() =>
              ensured
                ? Effect.void
                : ensureTable(sql, table).pipe(
                    Effect.tap(() =>
                      Effect.sync(() => {
                        ensured = true
                      })
                    )
                  )
            )
          )
    )
}

export interface CheckpointRow {
  readonly time_bucket: string
  readonly event_id: string | null
}

export const selectCheckpoint = (
  sql: SqlClient.SqlClient,
  table: PgStateTable
): Effect.Effect<Option.Option<CheckpointRow>, SqlError> =>
  sql
    .withoutTransforms()
    .unsafe<CheckpointRow>(`SELECT time_bucket, event_id FROM ${table.qualifiedName} WHERE id = $1`, [table.id])
    .pipe(Effect.map((rows) => Option.fromUndefinedOr(rows[0])))

export const upsertCheckpoint = (
  sql: SqlClient.SqlClient,
  table: PgStateTable,
  state: { readonly timeBucket: string; readonly eventId?: string | undefined }
): Effect.Effect<void, SqlError> =>
  sql
    .withoutTransforms()
    .unsafe(
      `INSERT INTO ${table.qualifiedName} (id, time_bucket, event_id, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (id) DO UPDATE SET time_bucket = EXCLUDED.time_bucket, event_id = EXCLUDED.event_id, updated_at = now()`,
      [table.id, state.timeBucket, state.eventId ?? null]
    )
    .pipe(Effect.asVoid)
