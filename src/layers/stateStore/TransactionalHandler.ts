/**
 * Exactly-once side effects for projections into PostgreSQL.
 *
 * When to use it: your handler writes its results (a read model, a projection, an outbox) into the same PostgreSQL
 * database that holds the pump's checkpoint. `transactionalHandler` runs your handler and the checkpoint upsert for
 * the batch's last event in ONE transaction, so either both commit or neither does. A crash at any instant therefore
 * leaves the projection and the checkpoint in agreement, and a restart re-reads exactly the events whose effects did
 * not commit: duplicates after a crash are 0.
 *
 * What it costs: one transaction (one connection held for the handler's duration) per batch, and the engine's
 * transactional mode, which processes batches strictly one after another in fetch order and retries a failed batch
 * in place. Throughput is bounded by handler time plus one commit per batch; raise the batch size to amortise it.
 *
 * Only work done through the `sql` client handed to the handler is covered. HTTP calls, messages to other systems or
 * writes to another database are still at-least-once. Pair it with `PostgresStateStore.layer` using the same
 * `{ id, table, schema }`, so the pump resumes from the row this handler commits.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { InvalidOptions } from "../../domain/errors.ts"
import type { FlowcoreEvent } from "../../domain/FlowcoreEvent.ts"
import { makeTableEnsurer, type PgStateTableOptions, resolvePgStateTable, upsertCheckpoint } from "./PgStateTable.ts"

/**
 * Wraps a user handler so that its SQL side effects and the checkpoint row commit in ONE transaction. Throws
 * `InvalidOptions` right away for a bad id, table or schema name, so a misconfiguration surfaces at wiring time.
 */
export const transactionalHandler = <E, R>(
  options: PgStateTableOptions,
  handler: (events: ReadonlyArray<FlowcoreEvent>, sql: SqlClient.SqlClient) => Effect.Effect<void, E, R>
): ((events: ReadonlyArray<FlowcoreEvent>) => Effect.Effect<void, E | SqlError, R | SqlClient.SqlClient>) => {
  const table = resolvePgStateTable(options)
  if (table instanceof InvalidOptions) throw table
  const ensureTable = makeTableEnsurer(table)
  const spanAttributes = { "state.table": table.qualifiedName, "state.id": table.id }

  return (events) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* ensureTable(sql)
      yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* handler(events, sql)
          const last = events.at(-1)
          if (last !== undefined) {
            yield* upsertCheckpoint(sql, table, { timeBucket: last.timeBucket, eventId: last.eventId })
          }
        })
      )
    }).pipe(Effect.withSpan("PostgresStateStore.transactionalHandler", { attributes: spanAttributes }))
}
