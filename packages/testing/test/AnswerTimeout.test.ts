import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { FaultProxy } from "@kpipe/testing"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"

/** The shared pool's Layer (`Database.layerConfig`) reaching the server through a fault proxy. */
const poolThroughProxy = (answerTimeout: string, connections = 2) =>
  Effect.flatMap(
    proxied,
    ({ proxy, url }) => Effect.map(pool(url, answerTimeout, connections), (sql) => ({ proxy, sql }))
  )

/** A FaultProxy in front of the server, and the URL of its `postgres` database through it. */
const proxied = Effect.gen(function*() {
  const target = new URL(Redacted.value(yield* Database.url))
  const proxy = yield* FaultProxy.make({ host: target.hostname, port: Number(target.port || 5432) })
  const url = new URL(target)
  url.host = `${proxy.host}:${proxy.port}`
  url.pathname = "/postgres"
  return { proxy, url }
})

const pool = (url: URL, answerTimeout: string, connections = 2) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Database.layerConfig(Config.succeed(Redacted.make(url.toString()))).pipe(
        Layer.provide(Layer.setConfigProvider(
          ConfigProvider.fromMap(
            new Map([["PG_ANSWER_TIMEOUT", answerTimeout], ["PG_MAX_CONNECTIONS", String(connections)]])
          )
        ))
      )
    )
    return Context.get(context, SqlClient)
  })

const backendPid = (sql: SqlClient) =>
  sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.pipe(Effect.map((rows) => rows[0]!.pid))

/**
 * A statement during `fault` fails with a `SqlError` whose cause names `texts`, after about the 1 s
 * timeout; the connection was closed, so the next statements get working ones.
 */
const failsThenRecovers = (
  proxy: FaultProxy.FaultProxy,
  sql: SqlClient,
  fault: FaultProxy.Fault,
  texts: ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    const started = Date.now()
    const lost = yield* proxy.during(fault, Effect.either(backendPid(sql)))
    const waited = Date.now() - started
    assert.isTrue(Either.isLeft(lost), "an error, not a wait")
    if (Either.isLeft(lost)) {
      assert.strictEqual(lost.left._tag, "SqlError")
      for (const text of texts) assert.include(String(lost.left.cause), text)
    }
    assert.isAtLeast(waited, 900)
    assert.isBelow(waited, 5_000)
    for (let i = 0; i < 3; i++) assert.isNumber(yield* backendPid(sql).pipe(Effect.timeout("3 seconds")))
  })

describe("Database.layerConfig: PG_ANSWER_TIMEOUT (real PostgreSQL behind a FaultProxy)", () => {
  it.scopedLive(
    "a statement sent into a blackhole fails within the timeout, and the pool recovers",
    () =>
      Effect.gen(function*() {
        const { proxy, sql } = yield* poolThroughProxy("1 second")
        assert.isNumber(yield* backendPid(sql))

        // The proxy drops what it holds: without the timeout the connection waits for good (this
        // test's 20 s timeout), as pg's does after a failover or a dropped route.
        yield* failsThenRecovers(proxy, sql, FaultProxy.blackhole, ["PG_ANSWER_TIMEOUT"])
      }),
    { timeout: 20_000 }
  )

  it.scopedLive(
    "a connection attempt the server does not accept fails within the timeout, and the pool connects once it does",
    () =>
      Effect.gen(function*() {
        const { proxy, sql } = yield* poolThroughProxy("1 second")
        assert.isNumber(yield* backendPid(sql))
        // The pool's connections are reset, so the next statement needs a new one; its SYNs go
        // unanswered. Without the timeout it waits for the kernel's retries (about two minutes: this
        // test's 20 s timeout), as after a failover to a host that is gone.
        yield* proxy.set(FaultProxy.cut)
        yield* Effect.either(backendPid(sql))
        yield* failsThenRecovers(proxy, sql, FaultProxy.unreachable, [
          "did not accept the connection",
          "PG_ANSWER_TIMEOUT"
        ])
      }),
    { timeout: 20_000 }
  )

  it.scopedLive(
    "so does a first connection over TLS (where only the attempt is watched)",
    () =>
      Effect.gen(function*() {
        const { proxy, url } = yield* proxied
        url.searchParams.set("sslmode", "require")
        const started = Date.now()
        const built = yield* proxy.during(FaultProxy.unreachable, Effect.exit(pool(url, "1 second")))
        const waited = Date.now() - started
        assert.isTrue(Exit.isFailure(built))
        // Without it, the kernel's SYN retries (135 s measured): @effect/sql-pg's 5 s bound on the
        // first connection cannot interrupt the attempt.
        if (Exit.isFailure(built)) {
          const [error] = Cause.failures(built.cause)
          assert.include(
            String(Predicate.hasProperty(error, "cause") ? error.cause : error),
            "did not accept the connection"
          )
        }
        assert.isBelow(waited, 4_000)
      }),
    { timeout: 20_000 }
  )

  it.scopedLive("so does a transaction, which then frees its connection", () =>
    Effect.gen(function*() {
      const { proxy, sql } = yield* poolThroughProxy("1 second", 1)
      const transaction = sql.withTransaction(backendPid(sql))
      assert.isNumber(yield* transaction)

      const started = Date.now()
      // @effect/sql's ROLLBACK on the closed connection dies, which replaces the statement's failure
      // by a defect (the pipeline's loops retry both).
      const lost = yield* proxy.during(FaultProxy.blackhole, Effect.exit(transaction))
      const waited = Date.now() - started
      assert.isTrue(Exit.isFailure(lost), "no answer → an error, not a wait")
      if (Exit.isFailure(lost)) {
        const errors = [...Cause.failures(lost.cause), ...Cause.defects(lost.cause)]
        assert.isTrue(errors.some((error) => error instanceof SqlError), Cause.pretty(lost.cause))
      }
      assert.isAtLeast(waited, 900)
      assert.isBelow(waited, 5_000)

      // One connection in the pool: the next transaction waits for good unless the dead one was released.
      for (let i = 0; i < 3; i++) assert.isNumber(yield* transaction.pipe(Effect.timeout("3 seconds")))
    }), { timeout: 20_000 })

  it.scopedLive("a connection that sent nothing is not closed however long it waits", () =>
    Effect.gen(function*() {
      const { sql } = yield* poolThroughProxy("1 second")
      yield* sql.withTransaction(Effect.gen(function*() {
        const before = yield* backendPid(sql)
        yield* Effect.sleep("3 seconds")
        assert.strictEqual(yield* backendPid(sql), before, "the same connection, still open")
      }))
    }), { timeout: 20_000 })

  it.scopedLive(
    "a statement answering later than the timeout fails (the timeout must exceed the longest)",
    () =>
      Effect.gen(function*() {
        const { sql } = yield* poolThroughProxy("1 second")
        const slow = yield* Effect.either(sql`SELECT pg_sleep(3)`)
        assert.isTrue(Either.isLeft(slow))
        if (Either.isLeft(slow)) assert.include(String(slow.left.cause), "PG_ANSWER_TIMEOUT")
        assert.isNumber(yield* backendPid(sql))
      }),
    { timeout: 20_000 }
  )

  it.effect("PG_ANSWER_TIMEOUT below 1 ms is refused", () =>
    Effect.gen(function*() {
      const refused = yield* Database.answerTimeout.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["PG_ANSWER_TIMEOUT", "0 millis"]]))),
        Effect.flip
      )
      assert.include(String(refused), "PG_ANSWER_TIMEOUT must be at least 1 millisecond")
    }))
})
