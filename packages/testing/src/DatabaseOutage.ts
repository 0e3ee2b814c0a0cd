import { SqlClient } from "@effect/sql/SqlClient"
import { Database } from "@kpipe/sql"
import * as Effect from "effect/Effect"

/**
 * Takes the database of the `SqlClient` in context away, as an outage would: it refuses new
 * connections and its open ones are terminated. Meant for a test's own database (`layerTest`), whose
 * release drops it all the same.
 */
export const cutOff = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ name: string }>`SELECT current_database() AS name`
  const name = row!.name
  const server = yield* Database.url
  yield* Database.onServer(server, (admin) =>
    admin`ALTER DATABASE ${admin(name)} ALLOW_CONNECTIONS false`.pipe(
      Effect.zipRight(admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${name}`)
    ))
})
