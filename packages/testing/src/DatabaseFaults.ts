import type { SqlError } from "@effect/sql/SqlError"
import { Database } from "@kpipe/sql"
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

/**
 * `database` refuses new connections and its open sessions are ended, until the scope closes (the
 * connections are allowed again whatever happens).
 */
export const refuseConnections = (
  url: Redacted.Redacted,
  database: string
): Effect.Effect<void, SqlError, Scope.Scope> =>
  Effect.acquireRelease(
    Database.onServer(url, (sql) => sql`ALTER DATABASE ${sql(database)} ALLOW_CONNECTIONS false`).pipe(
      Effect.zipRight(terminateBackends(url, database)),
      Effect.zipRight(Effect.logInfo(`${database} refuses connections`))
    ),
    () =>
      Database.onServer(url, (sql) => sql`ALTER DATABASE ${sql(database)} ALLOW_CONNECTIONS true`).pipe(
        Effect.zipRight(Effect.logInfo(`${database} accepts connections again`)),
        Effect.orDie
      )
  ).pipe(Effect.asVoid)
