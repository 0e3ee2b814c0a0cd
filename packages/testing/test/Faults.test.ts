import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, FaultProxy } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as net from "node:net"

const serverUrl = Effect.map(Database.url, Redacted.value)

/** A fresh test database and its name, dropped afterwards. */
const testDatabase = Effect.gen(function*() {
  const url = yield* Database.url
  const name = `kpipe_test_faults_${Math.random().toString(36).slice(2, 8)}`
  yield* Effect.acquireRelease(
    Database.onServer(url, (sql) => sql`CREATE DATABASE ${sql(name)}`),
    () => Database.onServer(url, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(Effect.orDie)
  )
  return name
})

const clientOn = (url: string) =>
  PgClient.make({ url: Redacted.make(url), maxConnections: 1, connectTimeout: "1 second" })

const select1 = (client: PgClient.PgClient) => client`SELECT 1 AS one`.pipe(Effect.timeout("2 seconds"), Effect.either)

/** The pool drops a broken connection when its error event arrives, which can be a query later. */
const recovers = (client: PgClient.PgClient) =>
  client`SELECT 1 AS one`.pipe(
    Effect.timeout("2 seconds"),
    Effect.retry({ times: 5, schedule: Schedule.spaced("100 millis") }),
    Effect.either
  )

/** A proxy in front of the shared server, a one-connection client through it, and its URL. */
const proxiedClient = Effect.gen(function*() {
  const target = new URL(yield* serverUrl)
  const proxy = yield* FaultProxy.make({ host: target.hostname, port: Number(target.port || 5432) })
  const viaProxy = new URL(target)
  viaProxy.host = `${proxy.host}:${proxy.port}`
  viaProxy.pathname = "/postgres"
  return { proxy, client: yield* clientOn(viaProxy.toString()), url: viaProxy.toString() }
})

describe("FaultProxy (TCP, in front of the real PostgreSQL)", () => {
  it.scopedLive("passes, cuts, blackholes and passes again", () =>
    Effect.gen(function*() {
      const { client, proxy } = yield* proxiedClient

      assert.isTrue(Either.isRight(yield* select1(client)))

      yield* proxy.set(FaultProxy.cut)
      assert.isTrue(Either.isLeft(yield* select1(client)), "a cut link fails the query")

      yield* proxy.set(FaultProxy.pass)
      // The pool replaces the reset connection.
      assert.isTrue(Either.isRight(yield* recovers(client)))

      const stalled = yield* proxy.during(FaultProxy.blackhole, select1(client))
      assert.isTrue(Either.isLeft(stalled), "nothing comes back through a blackhole")
      assert.isAbove(yield* proxy.connections, 1)
    }).pipe(Effect.provide(Reactivity.layer)), { timeout: 30_000 })

  it.scopedLive(
    "freezes: a query sent meanwhile is answered once the fault ends, unless a blackhole follows",
    () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* proxiedClient
        assert.isTrue(Either.isRight(yield* select1(client)))

        yield* proxy.set(FaultProxy.freeze)
        const before = yield* proxy.clientChunks
        const query = yield* Effect.fork(client<{ one: number }>`SELECT 1 AS one`)
        yield* Effect.sleep("500 millis")
        assert.isNull(yield* Fiber.poll(query).pipe(Effect.map(Option.getOrNull)), "nothing answered while frozen")
        assert.isAbove(yield* proxy.clientChunks, before, "the query was sent")
        yield* proxy.set(FaultProxy.pass)
        const rows = yield* Fiber.join(query).pipe(Effect.timeout("2 seconds"))
        assert.deepStrictEqual(rows.map((row) => row.one), [1])

        // Held, then blackholed: what the freeze held never reaches the server.
        const name = `held-${Math.random().toString(36).slice(2, 8)}`
        yield* proxy.set(FaultProxy.freeze)
        const lost = yield* Effect.fork(
          client`SELECT set_config('application_name', ${name}, false)`.pipe(Effect.timeout("2 seconds"), Effect.either)
        )
        yield* Effect.sleep("200 millis")
        yield* proxy.set(FaultProxy.blackhole)
        assert.isTrue(Either.isLeft(yield* Fiber.join(lost)))
        yield* proxy.set(FaultProxy.pass)
        const url = yield* Database.url
        const seen = yield* Database.onServer(
          url,
          (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${name}`
        )
        assert.strictEqual(seen[0]!.n, 0, "nothing held goes through a blackhole")
      }).pipe(Effect.provide(Reactivity.layer)),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "unreachable: new connections are not accepted and open ones hear nothing; connections go through once it ends",
    () =>
      Effect.gen(function*() {
        const { client, proxy, url } = yield* proxiedClient
        assert.isTrue(Either.isRight(yield* select1(client)), "the client's connection, open before the fault")
        const connect = Effect.async<net.Socket>((resume) => {
          const socket = net.connect(proxy.port, proxy.host)
          socket.once("connect", () => resume(Effect.succeed(socket)))
          socket.on("error", () => {})
          return Effect.sync(() => socket.destroy())
        })

        yield* proxy.set(FaultProxy.unreachable)
        const accepted = yield* proxy.connections
        assert.isTrue(Option.isNone(yield* Effect.timeoutOption(connect, "1 second")), "no connection accepted")
        // Connected once the fault ends: the SYN retried by the kernel (1 s, 3 s, ...) reaches the proxy.
        const waiting = yield* Effect.fork(connect)
        assert.isTrue(Either.isLeft(yield* select1(client)), "nothing through an open connection")
        yield* proxy.set(FaultProxy.pass)
        const late = yield* Fiber.join(waiting).pipe(Effect.timeout("10 seconds"))
        late.destroy()
        // The kernel completes the handshake before the proxy's accept runs.
        const counted = yield* proxy.connections.pipe(
          Effect.repeat({ until: (n) => n > accepted, schedule: Schedule.spaced("20 millis") }),
          Effect.timeoutOption("2 seconds")
        )
        assert.isTrue(Option.isSome(counted), "the late connection went through the proxy")
        // (The open connection's query was dropped, so that pg connection waits for good.)
        assert.isTrue(Either.isRight(yield* select1(yield* clientOn(url))), "a new client gets through")
      }).pipe(Effect.provide(Reactivity.layer)),
    { timeout: 30_000 }
  )

  it.scopedLive("delays each chunk", () =>
    Effect.gen(function*() {
      const echo = net.createServer((socket) => socket.pipe(socket))
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          echo.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () =>
          Effect.sync(() => {
            echo.close()
          })
      )
      const address = echo.address() as net.AddressInfo
      const proxy = yield* FaultProxy.make({ host: "127.0.0.1", port: address.port })
      yield* proxy.set(FaultProxy.delay("150 millis"))
      const started = Date.now()
      const answer = yield* Effect.async<string>((resume) => {
        const socket = net.connect(proxy.port, proxy.host, () => socket.write("ping"))
        socket.once("data", (data) => {
          socket.destroy()
          resume(Effect.succeed(data.toString()))
        })
      })
      assert.strictEqual(answer, "ping")
      assert.isAtLeast(Date.now() - started, 300, "delayed on the way there and back")
    }), { timeout: 10_000 })
})

describe("DatabaseFaults (real PostgreSQL)", () => {
  it.scopedLive("terminates a database's sessions; the pool reconnects", () =>
    Effect.gen(function*() {
      const name = yield* testDatabase
      const url = yield* Database.url
      const client = yield* clientOn(Database.withDatabase(Redacted.value(url), name))
      const backend = client<{ readonly pid: number }>`SELECT pg_backend_pid() AS pid`.pipe(
        Effect.retry({ times: 5, schedule: Schedule.spaced("100 millis") }),
        Effect.map((rows) => rows[0]!.pid)
      )
      const before = yield* backend
      assert.strictEqual(yield* DatabaseFaults.terminateBackends(url, name), 1)
      assert.notStrictEqual(yield* backend, before, "a new session replaced the terminated one")
    }).pipe(Effect.provide(Reactivity.layer)), { timeout: 30_000 })

  it.scopedLive("refuses connections until the scope closes", () =>
    Effect.gen(function*() {
      const name = yield* testDatabase
      const url = yield* Database.url
      const client = yield* clientOn(Database.withDatabase(Redacted.value(url), name))
      assert.isTrue(Either.isRight(yield* select1(client)))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* DatabaseFaults.refuseConnections(url, name)
        assert.isTrue(Either.isLeft(yield* select1(client)), "the open session was ended")
        assert.isTrue(Either.isLeft(yield* select1(client)), "a new one is refused")
      }))
      assert.isTrue(Either.isRight(yield* recovers(client)), "accepted again after the scope")
    }).pipe(Effect.provide(Reactivity.layer)), { timeout: 30_000 })
})
