import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, TestKafka, TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { startReplica } from "./utils.ts"

const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest([])).pipe(Layer.provideMerge(TestLogging.layer))

interface Report {
  readonly status: string
  readonly checks: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly detail?: string }>
}

const health = (port: number, path: string) =>
  Effect.tryPromise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) })
    return { status: response.status, report: await response.json() as Report }
  })

const until = (port: number, status: number) =>
  health(port, "/health/ready").pipe(
    Effect.filterOrFail((answer) => answer.status === status),
    Effect.retry(Schedule.spaced("250 millis")),
    Effect.timeout("30 seconds")
  )

describe("account-service health", () => {
  it.live(
    "ready lists its checks; 503 while its database refuses connections, 200 again after; live stays 200",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const prefix = `${TestKafka.uniqueName("health")}.`
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const url = yield* Database.url
        const replica = yield* startReplica(0, {
          DATABASE_URL: Database.withDatabase(Redacted.value(url), current!.database),
          TOPIC_PREFIX: prefix
        })

        const ready = yield* until(replica.port, 200)
        assert.strictEqual(ready.report.status, "ok")
        assert.sameMembers(ready.report.checks.map((check) => check.name), [
          "database",
          "broker",
          `consumer ${prefix}account-service`
        ])

        const refused = yield* Effect.scoped(Effect.gen(function*() {
          yield* DatabaseFaults.refuseConnections(url, current!.database)
          const down = yield* until(replica.port, 503)
          const live = yield* health(replica.port, "/health/live")
          assert.strictEqual(live.status, 200)
          return down
        }))
        assert.strictEqual(refused.report.status, "unavailable")
        const database = refused.report.checks.find((check) => check.name === "database")
        assert.isFalse(database?.ok)
        assert.isTrue(refused.report.checks.find((check) => check.name === "broker")?.ok)

        const back = yield* until(replica.port, 200)
        assert.isTrue(back.report.checks.every((check) => check.ok))
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 120_000 }
  )
})
