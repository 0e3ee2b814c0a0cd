import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { Infrastructure } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("Infrastructure", () => {
  it.live("finds the running broker without starting another", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Infrastructure.ensureKafka, { startedHere: false })
    }))

  it.live("names the command to run when the configured broker does not answer", () =>
    Effect.gen(function*() {
      const error = yield* Infrastructure.ensureKafka.pipe(withEnv({ KAFKA_BROKERS: "127.0.0.1:1" }), Effect.flip)
      assert.strictEqual(error._tag, "InfrastructureError")
      assert.include(error.message, "KAFKA_BROKERS=127.0.0.1:1")
      assert.include(error.message, "pnpm kafka start")
    }))

  it.live("creates the application database once, then finds it", () =>
    Effect.gen(function*() {
      const name = `kpipe_infra_${crypto.randomUUID().replaceAll("-", "")}`
      const url = Database.withDatabase(Database.defaultUrl, name)
      const ensure = Infrastructure.ensureDatabase.pipe(withEnv({ DATABASE_URL: url }))
      const drop = Database.onServer(Redacted.make(url), (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)}`)
      const [first, second] = yield* Effect.all([ensure, ensure]).pipe(Effect.ensuring(Effect.orDie(drop)))
      assert.deepStrictEqual([first, second], [true, false])
    }))

  it.live("names the command to run when PostgreSQL does not answer", () =>
    Effect.gen(function*() {
      const error = yield* Infrastructure.checkPostgres.pipe(
        withEnv({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/kpipe" }),
        Effect.flip
      )
      assert.strictEqual(error.component, "PostgreSQL")
      assert.include(error.message, "DATABASE_URL")
    }))
})
