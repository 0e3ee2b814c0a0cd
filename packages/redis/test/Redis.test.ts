import { assert, describe, it } from "@effect/vitest"
import { Redis } from "@kpipe/redis"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Net from "node:net"

// @kpipe/testing (its FaultProxy) builds on this package through devtools, so these tests have their own proxies.

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

type Fault = "pass" | "silent" | "dropReplies"

/**
 * A pass-through to the real server with faults: `silent` lets nothing through either way (a frozen
 * server, a dead route), `dropReplies` forwards the commands and swallows the replies; `reset`
 * drops every connection.
 */
const faultyProxy = Effect.acquireRelease(
  Effect.async<
    {
      readonly port: number
      readonly set: (fault: Fault) => void
      readonly reset: () => void
      readonly server: Net.Server
    }
  >((resume) => {
    let fault: Fault = "pass"
    const clients = new Set<Net.Socket>()
    const server = Net.createServer((client) => {
      const upstream = Net.connect(6379, "127.0.0.1")
      clients.add(client)
      client.on("data", (chunk: Buffer) => fault === "silent" || upstream.write(chunk))
      upstream.on("data", (chunk: Buffer) => fault === "pass" && client.write(chunk))
      const close = () => {
        clients.delete(client)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        port: (server.address() as Net.AddressInfo).port,
        set: (next) => {
          fault = next
        },
        reset: () => clients.forEach((client) => client.resetAndDestroy()),
        server
      })))
  }),
  ({ reset, server }) =>
    Effect.sync(() => {
      reset()
      server.close()
    })
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
      assert.isTrue(error.unavailable)
    }))

  it.live("an error reply saying Redis cannot serve now is unavailable; one about the command is not", () =>
    Effect.gen(function*() {
      const redis = yield* Redis.Redis
      const reply = (text: string) =>
        Effect.flip(redis.use((client) => client.eval(`return redis.error_reply('${text}')`, 0)))
      const readOnly = yield* reply("READONLY You cannot write against a read only replica.")
      const wrongType = yield* reply("WRONGTYPE Operation against a key holding the wrong kind of value")
      assert.deepStrictEqual([readOnly.reason, readOnly.unavailable], ["Command", true])
      assert.deepStrictEqual([wrongType.reason, wrongType.unavailable], ["Command", false])
    }).pipe(Effect.scoped, Effect.provide(Redis.layerFromEnv)))

  it.live("a server that stops answering: a command fails as a Timeout, and once it answers again so do commands", () =>
    Effect.gen(function*() {
      const proxy = yield* faultyProxy
      const redis = yield* Redis.make({
        url: Redacted.make(`redis://127.0.0.1:${proxy.port}`),
        commandTimeout: "300 millis"
      })
      const key = `kpipe:test:${crypto.randomUUID()}`
      yield* redis.use((client) => client.set(key, "value", "EX", 30))

      proxy.set("silent")
      const error = yield* redis.use((client) => client.get(key)).pipe(
        Effect.flip,
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("no answer within 5 s") })
      )
      // Whichever comes first of the command's timeout and the silent connection being dropped.
      assert.include(["Timeout", "Lost"], error.reason)

      // What the silent connection swallowed never comes back: a client that kept it would match
      // every later reply to the wrong command. It is dropped and a new one opened.
      proxy.set("pass")
      const value = yield* redis.use((client) => client.get(key)).pipe(
        Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("5 seconds")))
      )
      assert.strictEqual(value, "value")
      assert.strictEqual(yield* redis.use((client) => client.del(key)), 1)
    }).pipe(Effect.scoped))

  it.live("a command whose connection is lost before its reply fails at once, and is not sent again on the next one", () =>
    Effect.gen(function*() {
      const proxy = yield* faultyProxy
      const redis = yield* Redis.make({
        url: Redacted.make(`redis://127.0.0.1:${proxy.port}`),
        commandTimeout: "10 seconds"
      })
      const direct = yield* Redis.make({ url: Redacted.make("redis://127.0.0.1:6379") })
      const key = `kpipe:test:${crypto.randomUUID()}`
      yield* Effect.addFinalizer(() => Effect.ignore(direct.use((client) => client.del(key))))

      proxy.set("dropReplies")
      const increment = yield* redis.use((client) => client.incr(key)).pipe(Effect.either, Effect.fork)
      yield* direct.use((client) => client.get(key)).pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (value) => value === "1" }),
        Effect.timeout("5 seconds")
      )
      proxy.set("pass")
      proxy.reset()
      const outcome = yield* Fiber.join(increment).pipe(Effect.timeout("5 seconds"))
      assert.isTrue(Either.isLeft(outcome), "the INCR ran again on the next connection")
      assert.strictEqual(Either.isLeft(outcome) && outcome.left.reason, "Lost")
      yield* redis.use((client) => client.ping()).pipe(
        Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("5 seconds")))
      )
      assert.strictEqual(yield* direct.use((client) => client.get(key)), "1")
    }).pipe(Effect.scoped))
})
