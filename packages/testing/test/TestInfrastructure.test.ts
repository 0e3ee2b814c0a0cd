import { assert, describe, it } from "@effect/vitest"
import { TestInfrastructure } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

/** Stand-ins that only say which one was built (the real testcontainers one needs Docker). */
const providers = (built: Array<string>) => ({
  local: Effect.sync((): TestInfrastructure.Settings => {
    built.push("local")
    return {
      source: "local",
      env: { KAFKA_BROKERS: "l:9092", DATABASE_URL: "postgres://l/kpipe", REDIS_URL: "redis://l" }
    }
  }),
  testcontainers: Effect.sync((): TestInfrastructure.Settings => {
    built.push("testcontainers")
    return {
      source: "testcontainers",
      env: { KAFKA_BROKERS: "c:1", DATABASE_URL: "postgres://c/kpipe", REDIS_URL: "redis://c" }
    }
  })
})

describe("TestInfrastructure", () => {
  it.effect("uses the machine's components when KPIPE_INFRA is not set", () =>
    Effect.gen(function*() {
      const built: Array<string> = []
      const settings = yield* TestInfrastructure.select(providers(built)).pipe(withEnv({}), Effect.scoped)
      assert.deepStrictEqual([built, settings.source, settings.env.KAFKA_BROKERS], [["local"], "local", "l:9092"])
    }))

  it.effect("starts containers only when KPIPE_INFRA=testcontainers", () =>
    Effect.gen(function*() {
      const built: Array<string> = []
      const settings = yield* TestInfrastructure.select(providers(built)).pipe(
        withEnv({ KPIPE_INFRA: "testcontainers" }),
        Effect.scoped
      )
      assert.deepStrictEqual([built, settings.env.DATABASE_URL], [["testcontainers"], "postgres://c/kpipe"])
      const local = yield* TestInfrastructure.select(providers(built)).pipe(
        withEnv({ KPIPE_INFRA: "local" }),
        Effect.scoped
      )
      assert.deepStrictEqual([built, local.source], [["testcontainers", "local"], "local"])
    }))

  it.effect("rejects any other KPIPE_INFRA, naming the choices", () =>
    Effect.gen(function*() {
      const built: Array<string> = []
      const error = yield* TestInfrastructure.select(providers(built)).pipe(
        withEnv({ KPIPE_INFRA: "docker" }),
        Effect.scoped,
        Effect.flip
      )
      assert.deepStrictEqual(built, [])
      assert.include(error.message, "KPIPE_INFRA")
      assert.include(error.message, "testcontainers")
    }))

  it.live("the local source reports the settings of this machine's running components", () =>
    Effect.gen(function*() {
      const env = {
        KAFKA_BROKERS: process.env["KAFKA_BROKERS"] ?? "127.0.0.1:9092",
        DATABASE_URL: process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/kpipe",
        REDIS_URL: process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"
      }
      const settings = yield* TestInfrastructure.local.pipe(withEnv(env), Effect.scoped)
      assert.deepStrictEqual(settings, { source: "local", env })
    }))
})
