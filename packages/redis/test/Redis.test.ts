import { assert, describe, it } from "@effect/vitest"
import { Redis } from "@kpipe/redis"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

describe("Redis (real server)", () => {
  it.live("answers PING and round-trips a value", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      assert.strictEqual(yield* redis.use((client) => client.ping()), "PONG")
      const key = `kpipe:test:${crypto.randomUUID()}`
      yield* redis.use((client) => client.set(key, "value", "EX", 30))
      assert.strictEqual(yield* redis.use((client) => client.get(key)), "value")
      yield* redis.use((client) => client.del(key))
    }).pipe(Effect.provide(Redis.layerFromEnv)))

  it.live("fails with a typed RedisError when nothing listens", () =>
    Effect.gen(function*() {
      const error = yield* Redis.make({ url: Redacted.make("redis://127.0.0.1:1"), connectTimeout: "500 millis" }).pipe(
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "RedisError")
      assert.strictEqual(error.reason, "Connect")
    }))
})
