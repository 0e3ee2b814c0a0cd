import { assert, describe, it } from "@effect/vitest"
import { Redis } from "@kpipe/redis"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

const url = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"
const AutoPipelined = Redis.layer({
  url: Redacted.make(`${url}${url.includes("?") ? "&" : "?"}enableAutoPipelining=true`)
})

// KEYS: counter, log. ARGV: step, note. Adds to the counter and logs the note; a negative step is refused.
const addLua = `
if tonumber(ARGV[1]) < 0 then return redis.error_reply('negative step') end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return {value, redis.call('LLEN', KEYS[2])}
`

const add = Redis.script<[number, number]>({ name: "kpipeTestAdd", numberOfKeys: 2, lua: addLua })

const freshKeys = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  const prefix = `kpipe:test:script:${crypto.randomUUID()}:`
  const keys = [`${prefix}counter`, `${prefix}log`]
  yield* Effect.addFinalizer(() => Effect.ignore(redis.use((client) => client.del(...keys))))
  return keys
})

// Only the script cache is flushed (never the data): the scripts of other clients are reloaded the same way.
const flushScripts = Effect.flatMap(Redis.Redis, (redis) => redis.use((client) => client.script("FLUSH")))

describe("Redis.script (real server)", () => {
  it.scoped("runs the script, alone and in a pipeline, also after the server lost it (SCRIPT FLUSH)", () =>
    Effect.gen(function*() {
      const keys = yield* freshKeys
      const run = yield* add
      assert.deepStrictEqual(yield* run(keys, [2, "a"]), [2, 1])

      yield* flushScripts
      assert.deepStrictEqual(yield* run(keys, [3, "b"]), [5, 2])

      yield* flushScripts
      const redis = yield* Redis.Redis
      const replies = yield* redis.pipeline((pipeline) => {
        run.queue(pipeline, keys, [1, "c"])
        run.queue(pipeline, keys, [1, "d"])
      })
      assert.deepStrictEqual(replies, [[6, 3], [7, 4]])
      assert.deepStrictEqual(yield* redis.use((client) => client.lrange(keys[1]!, 0, -1)), ["a", "b", "c", "d"])
    }).pipe(Effect.provide(Redis.layerFromEnv)))

  it.scoped("works auto-pipelined: concurrent calls, after SCRIPT FLUSH", () =>
    Effect.gen(function*() {
      const keys = yield* freshKeys
      const redis = yield* Redis.Redis
      assert.isOk(redis.client.options.enableAutoPipelining)
      const run = yield* add
      yield* run(keys, [0, "first"])
      yield* flushScripts
      const replies = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => run(keys, [1, `n${i}`]),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(replies.map(([value]) => value).sort((a, b) => a - b), replies.map((_, i) => i + 1))
      assert.strictEqual(yield* redis.use((client) => client.get(keys[0]!)), "20")
    }).pipe(Effect.provide(AutoPipelined)))

  it.scoped("a script's error reply is a typed RedisError; in a pipeline it fails the pipeline", () =>
    Effect.gen(function*() {
      const keys = yield* freshKeys
      const run = yield* add
      const alone = yield* Effect.flip(run(keys, [-1, "x"]))
      assert.strictEqual(alone._tag, "RedisError")
      assert.strictEqual(alone.reason, "Command")
      assert.include(alone.message, "negative step")
      assert.isFalse(alone.unavailable, "a script's own error reply: waiting cannot fix it")

      const redis = yield* Redis.Redis
      const piped = yield* Effect.flip(redis.pipeline((pipeline) => {
        run.queue(pipeline, keys, [1, "ok"])
        run.queue(pipeline, keys, [-1, "refused"])
      }))
      assert.include(piped.message, "negative step")
      assert.strictEqual(yield* redis.use((client) => client.get(keys[0]!)), "1")
    }).pipe(Effect.provide(Redis.layerFromEnv)))

  it.scoped("a script is defined once per client: the same one again is fine, a clashing name is a defect", () =>
    Effect.gen(function*() {
      const keys = yield* freshKeys
      const first = yield* add
      const again = yield* add
      assert.deepStrictEqual(yield* again(keys, [4, "x"]), [4, 1])
      assert.deepStrictEqual(yield* first(keys, [1, "y"]), [5, 2])

      const clash = yield* Effect.exit(Redis.script({ name: "kpipeTestAdd", numberOfKeys: 1, lua: "return 1" }))
      assert.isTrue(Exit.isFailure(clash))
      const builtin = yield* Effect.exit(Redis.script({ name: "get", numberOfKeys: 1, lua: "return 1" }))
      assert.isTrue(Exit.isFailure(builtin))
      const wrongKeys = yield* Effect.exit(first([keys[0]!], [1, "z"]))
      assert.isTrue(Exit.isFailure(wrongKeys))
    }).pipe(Effect.provide(Layer.fresh(Redis.layerFromEnv))))
})
