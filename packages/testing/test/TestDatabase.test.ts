import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { TestDatabase } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

const currentDatabase = Effect.flatMap(SqlClient, (sql) => sql<{ name: string }>`SELECT current_database() AS name`)
  .pipe(Effect.map((rows) => rows[0]!.name))

describe("TestDatabase", () => {
  it.live("gives each Layer a fresh database and drops it on release", () =>
    Effect.gen(function*() {
      const [first, second] = yield* Effect.all([
        currentDatabase.pipe(Effect.provide(TestDatabase.layer())),
        currentDatabase.pipe(Effect.provide(TestDatabase.layer()))
      ], { concurrency: 2 })
      assert.notStrictEqual(first, second)
      assert.match(first, /^kpipe_test_/)

      const remaining = yield* Effect.flatMap(
        SqlClient,
        (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_database WHERE datname IN (${first}, ${second})`
      ).pipe(Effect.provide(
        Database.layerConfig(
          Config.map(Database.url, (url) => Redacted.make(Database.withDatabase(Redacted.value(url), "postgres")))
        )
          .pipe(Layer.orDie)
      ))
      assert.strictEqual(remaining[0]!.n, 0)
    }))
})
