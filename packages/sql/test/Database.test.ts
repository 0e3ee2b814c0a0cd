import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

const migrations = {
  table: "smoke_migrations",
  loader: Migrator.fromRecord({
    "0001_create_notes": Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE notes (id SERIAL PRIMARY KEY, note_text TEXT NOT NULL UNIQUE)`
    })
  })
}

const countNotes = (text: string) =>
  Effect.flatMap(SqlClient, (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM notes WHERE note_text = ${text}`)
    .pipe(Effect.map((rows) => rows[0]!.n))

describe("PostgreSQL through @effect/sql-pg (real server)", () => {
  it.layer(Database.layerTest([migrations]), { timeout: 30_000 })((it) => {
    it.effect("a transaction that succeeds commits its rows", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO notes ${sql.insert({ noteText: "committed" })}`
          yield* sql`INSERT INTO notes ${sql.insert({ noteText: "committed too" })}`
        }))
        assert.strictEqual(yield* countNotes("committed"), 1)
        assert.strictEqual(yield* countNotes("committed too"), 1)
      }))

    it.effect("a transaction that fails rolls back every row it wrote", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const error = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO notes ${sql.insert({ noteText: "rolled back" })}`
          yield* sql`INSERT INTO notes ${sql.insert({ noteText: "rolled back" })}`
        })).pipe(Effect.flip)
        assert.strictEqual(error._tag, "SqlError")
        assert.strictEqual(yield* countNotes("rolled back"), 0)
      }))

    it.effect("the schema came from the migration history", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const applied = yield* sql<
          { migrationId: number; name: string }
        >`SELECT migration_id, name FROM smoke_migrations`
        assert.deepStrictEqual(applied, [{ migrationId: 1, name: "create_notes" }])
      }))
  })
})

const currentDatabase = Effect.flatMap(SqlClient, (sql) => sql<{ name: string }>`SELECT current_database() AS name`)
  .pipe(Effect.map((rows) => rows[0]!.name))

describe("Database.layerTest", () => {
  it.live("gives each Layer a fresh database and drops it on release", () =>
    Effect.gen(function*() {
      const [first, second] = yield* Effect.all([
        currentDatabase.pipe(Effect.provide(Database.layerTest())),
        currentDatabase.pipe(Effect.provide(Database.layerTest()))
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
