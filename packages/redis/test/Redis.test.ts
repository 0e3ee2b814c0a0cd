import { assert, describe, it } from "@effect/vitest"
import { Redis } from "@kpipe/redis"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as Net from "node:net"

/** A pass-through to the real server that keeps what clients sent, for the life of the scope. */
const recordingProxy = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly sent: () => string; readonly server: Net.Server }>((resume) => {
    const chunks: Array<Buffer> = []
    const server = Net.createServer((client) => {
      const upstream = Net.connect(6379, "127.0.0.1")
      client.on("data", (chunk: Buffer) => chunks.push(chunk))
      client.pipe(upstream).pipe(client)
      client.on("error", () => upstream.destroy())
      upstream.on("error", () => client.destroy())
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        port: (server.address() as Net.AddressInfo).port,
        sent: () => Buffer.concat(chunks).toString("latin1"),
        server
      })))
  }),
  ({ server }) => Effect.sync(() => server.close())
)

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

  it.live("interrupted, as a service is on SIGTERM, the client says QUIT before it goes", () =>
    Effect.gen(function*() {
      const proxy = yield* recordingProxy
      const connected = yield* Deferred.make<void>()
      const client = yield* Redis.make({ url: Redacted.make(`redis://127.0.0.1:${proxy.port}`) }).pipe(
        Effect.tap((redis) => redis.use((client) => client.ping())),
        Effect.zipRight(Deferred.succeed(connected, undefined)),
        Effect.zipRight(Effect.never),
        Effect.scoped,
        Effect.fork
      )
      yield* Deferred.await(connected)
      // Finalizers run on the interrupted fiber: an `interruptible` outside the QUIT's timeout
      // ended it before QUIT was sent, and the connection was only dropped.
      yield* Fiber.interrupt(client)
      assert.include(proxy.sent().toUpperCase(), "\r\nQUIT\r\n")
    }).pipe(Effect.scoped))

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
