import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Health } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"

// The service's pool one connection strong, so one transaction holds all of it.
const OnePool = Database.layerTest().pipe(
  Layer.provide(Layer.setConfigProvider(
    ConfigProvider.fromMap(new Map([["PG_MAX_CONNECTIONS", "1"]])).pipe(
      ConfigProvider.orElse(() => ConfigProvider.fromEnv())
    )
  ))
)

describe("Health.database", () => {
  it.live(
    "stays ready while the service's pool is all held: the check has a connection of its own",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const health = yield* Health.Health
        const held = yield* Effect.fork(sql.withTransaction(Effect.zipRight(sql`SELECT 1`, Effect.sleep("4 seconds"))))
        yield* Effect.sleep("300 millis")
        const report = yield* health.ready
        assert.deepStrictEqual(report.checks.map(({ name, ok }) => [name, ok]), [["database", true]])
        assert.strictEqual(report.status, "ok")
        yield* Fiber.join(held)
      }).pipe(
        Effect.provide(
          Health.database.pipe(Layer.provideMerge(Health.layer("health-test")), Layer.provideMerge(OnePool))
        )
      ),
    { timeout: 30_000 }
  )
})
