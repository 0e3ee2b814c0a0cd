import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Database } from "@kpipe/sql"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"

/**
 * Faults of one database on the shared server, made with the server's own means so that nothing
 * of the server's configuration changes: its sessions killed, or its connections refused for a while.
 */

/** Ends every session on `database` but the caller's (as a failover or an operator would); returns how many. */
export const terminateBackends = (url: Redacted.Redacted, database: string): Effect.Effect<number, SqlError> =>
  Database.onServer(url, (sql) =>
    sql<{ readonly terminated: boolean }>`
      SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
      WHERE datname = ${database} AND pid <> pg_backend_pid()`).pipe(
      Effect.map((rows) => rows.filter((row) => row.terminated).length),
      Effect.tap((count) => Effect.logInfo(`Terminated ${count} sessions on ${database}`))
    )

const refuse = (url: Redacted.Redacted, database: string) =>
  Database.onServer(url, (sql) => sql`ALTER DATABASE ${sql(database)} ALLOW_CONNECTIONS false`).pipe(
    Effect.zipRight(terminateBackends(url, database)),
    Effect.zipRight(Effect.logInfo(`${database} refuses connections`))
  )

/**
 * `database` refuses new connections and its open sessions are ended, until the scope closes (the
 * connections are allowed again whatever happens).
 */
export const refuseConnections = (
  url: Redacted.Redacted,
  database: string
): Effect.Effect<void, SqlError, Scope.Scope> =>
  Effect.acquireRelease(
    refuse(url, database),
    () =>
      Database.onServer(url, (sql) => sql`ALTER DATABASE ${sql(database)} ALLOW_CONNECTIONS true`).pipe(
        Effect.zipRight(Effect.logInfo(`${database} accepts connections again`)),
        Effect.orDie
      )
  ).pipe(Effect.asVoid)

/**
 * The database of the `SqlClient` in context goes away for good, as an outage would: new connections
 * refused, open ones ended. Meant for a test's own database (`Database.layerTest`), which is dropped
 * at the end all the same.
 */
export const cutOff: Effect.Effect<void, SqlError | ConfigError.ConfigError, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ readonly name: string }>`SELECT current_database() AS name`
  yield* refuse(yield* Database.url, row!.name)
})
