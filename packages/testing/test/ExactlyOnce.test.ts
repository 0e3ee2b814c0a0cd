import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { ExactlyOnce } from "@kpipe/testing"
import * as Effect from "effect/Effect"

layer(Database.layerTest())("ExactlyOnce", (it) => {
  describe("createAppliedTable", () => {
    it.effect("runs alongside itself: properties of one file start together on one database", () =>
      Effect.gen(function*() {
        // CREATE TABLE IF NOT EXISTS is no guard against a concurrent one: both pass the check,
        // and the second insert into the catalog fails ("duplicate key ... pg_type_typname_nsp_index").
        const sql = yield* SqlClient
        for (let round = 0; round < 20; round++) {
          yield* sql`DROP TABLE IF EXISTS exactly_once_applied`
          yield* Effect.all(Array.from({ length: 8 }, () => ExactlyOnce.createAppliedTable), { concurrency: 8 })
        }
        const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM exactly_once_applied`
        assert.strictEqual(row!.n, 0)
      }))
  })
})
