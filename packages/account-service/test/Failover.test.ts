import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import type { LoginEvents } from "@kpipe/events"
import { Publisher, Topic } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { TestKafka, TestLogging } from "@kpipe/testing"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import {
  committedTotal,
  eventually,
  login,
  processedCount,
  type ReplicaProcess,
  startReplica,
  waitForMembers
} from "./utils.ts"

const accounts = 50
const batchSize = 100

const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest([])).pipe(Layer.provideMerge(TestLogging.layer))

describe("account-service failover (S0), three real processes", () => {
  it.live(
    "a replica killed with SIGKILL mid-stream and a fourth joining later: every login counted exactly once",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const prefix = `${TestKafka.uniqueName("s0")}.`
        const topic = Topic.prefixed(SeedTopics.loginEvents, prefix)
        const group = `${prefix}account-service`
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const env = {
          DATABASE_URL: Database.withDatabase(Redacted.value(yield* Database.url), current!.database),
          TOPIC_PREFIX: prefix,
          KAFKA_SESSION_TIMEOUT_MS: "6000",
          KAFKA_HEARTBEAT_INTERVAL_MS: "500",
          KAFKA_REBALANCE_TIMEOUT_MS: "10000",
          KAFKA_MAX_WAIT_MS: "100",
          CONSUMER_BATCH_SIZE: String(batchSize)
        }

        // Started together on an empty database: they race to migrate it and to create the topics.
        const replicas: Array<ReplicaProcess> = yield* Effect.all(
          [0, 1, 2].map((replica) => startReplica(replica, env)),
          { concurrency: "unbounded" }
        )
        yield* waitForMembers(group, 3)

        const base = Date.now()
        const events: Array<LoginEvents.LoginSucceeded> = []
        const publishBurst = (size: number) =>
          Effect.suspend(() => {
            const burst = Array.from({ length: size }, (_, i) => {
              const n = events.length + i
              return login(prefix, 1 + (n % accounts), n, base + n)
            })
            events.push(...burst)
            return Publisher.publish(topic, ...burst)
          })

        const victim = replicas[1]!
        // The sleeps between bursts shape the load (a stream, not one batch); every wait on an outcome polls it.
        yield* publishBurst(100)
        yield* Effect.sleep("200 millis")
        yield* publishBurst(100)
        yield* eventually(Effect.sync(() => victim.processed().size > 0), "30 seconds", "victim applying events")
        yield* publishBurst(100)
        victim.kill("SIGKILL")
        const killedAt = events.length
        for (let burst = 0; burst < 3; burst++) {
          yield* Effect.sleep("200 millis")
          yield* publishBurst(100)
        }
        assert.strictEqual((yield* Deferred.await(victim.exited)).signal, "SIGKILL")

        yield* eventually(Effect.map(processedCount(group), (n) => n === 600), "90 seconds", "600 events applied")
        yield* waitForMembers(group, 2)

        // Redelivery of already-applied events, as a producer retry or an offset reset would cause.
        yield* Publisher.publish(topic, ...events.slice(0, 50))
        yield* eventually(
          Effect.map(committedTotal(group, topic.name), (n) => n === 650),
          "30 seconds",
          "duplicates consumed"
        )

        const joiner = yield* startReplica(3, env)
        replicas.push(joiner)
        yield* waitForMembers(group, 3)
        for (let burst = 0; burst < 4; burst++) {
          yield* publishBurst(50)
          yield* Effect.sleep("150 millis")
        }
        yield* eventually(Effect.map(processedCount(group), (n) => n === 800), "60 seconds", "800 events applied")
        yield* eventually(
          Effect.map(committedTotal(group, topic.name), (n) => n === 850),
          "30 seconds",
          "every offset committed"
        )

        // The database: each event applied exactly once.
        const [totals] = yield* sql<{ logins: number; accounts: number }>`
          SELECT coalesce(sum(login_count), 0)::int AS logins, count(*)::int AS accounts FROM account_login_stats`
        assert.deepStrictEqual(totals, { logins: events.length, accounts })
        const claims = yield* sql<{ eventId: string; partition: number; outcome: string }>`
          SELECT event_id, partition, outcome FROM kpipe_processed_events WHERE consumer_group = ${group}`
        assert.strictEqual(claims.length, events.length)
        assert.deepStrictEqual(new Set(claims.map((claim) => claim.eventId)), new Set(events.map((e) => e.eventId)))
        assert.isTrue(claims.every((claim) => claim.outcome === "APPLIED"))
        const perAccount = yield* sql<{ accountId: string; loginCount: string; lastSessionId: string }>`
          SELECT account_id, login_count, last_session_id FROM account_login_stats ORDER BY account_id`
        const expected = new Map<number, { count: number; last: string }>()
        for (const event of events) {
          const entry = expected.get(event.accountId) ?? { count: 0, last: "" }
          expected.set(event.accountId, { count: entry.count + 1, last: event.sessionId })
        }
        assert.deepStrictEqual(
          perAccount.map((row) => [Number(row.accountId), Number(row.loginCount), row.lastSessionId]),
          [...expected.entries()].sort(([a], [b]) => a - b).map(([id, { count, last }]) => [id, count, last])
        )

        // The logs: no event is announced twice, whichever replicas handled it.
        const partitionOf = new Map(claims.map((claim) => [claim.eventId, claim.partition]))
        const sessionPartition = new Map(events.map((e) => [e.sessionId as string, partitionOf.get(e.eventId)!]))
        const loggedBy = new Map<string, Array<number>>()
        for (const replica of replicas) {
          for (const [session, times] of replica.processed()) {
            for (let i = 0; i < times; i++) loggedBy.set(session, [...(loggedBy.get(session) ?? []), replica.replica])
          }
        }
        const twice = [...loggedBy.entries()].filter(([, by]) => by.length > 1)
        assert.deepStrictEqual(twice, [])
        // Only the killed replica can have committed an event and died before its log line.
        const victimPartitions = new Set([...victim.processed().keys()].map((session) => sessionPartition.get(session)))
        const unlogged = events.filter((e) => !loggedBy.has(e.sessionId))
        assert.isAtMost(unlogged.length, batchSize)
        for (const event of unlogged) assert.isTrue(victimPartitions.has(sessionPartition.get(event.sessionId)))

        // The victim's partitions moved: survivors applied events there that were published after the kill.
        const afterKill = events.slice(killedAt, 600).filter((e) =>
          victimPartitions.has(sessionPartition.get(e.sessionId))
        )
        assert.isAbove(afterKill.length, 0)
        const survivorsThere = afterKill.filter((e) => (loggedBy.get(e.sessionId) ?? []).some((r) => r !== 1))
        assert.strictEqual(survivorsThere.length, afterKill.length)
        // The joiner took part after the rebalance.
        assert.isAbove(joiner.processed().size, 0)

        // The HTTP API of a survivor reads the shared database.
        const response = yield* Effect.tryPromise(() =>
          fetch(`http://127.0.0.1:${replicas[2]!.port}/api/accounts/1/logins`, { headers: { "x-user-id": "1" } }).then((
            r
          ) => r.json())
        )
        assert.strictEqual((response as { loginCount: number }).loginCount, expected.get(1)!.count)
        const health = yield* Effect.tryPromise(() =>
          fetch(`http://127.0.0.1:${joiner.port}/health`).then((r) => r.json())
        )
        assert.deepStrictEqual(health, { status: "ok", service: "account-service", replica: 3 })

        // Graceful stop: SIGTERM drains and exits 0.
        for (const replica of [replicas[0]!, replicas[2]!, joiner]) replica.kill("SIGTERM")
        const exits = yield* Effect.all([replicas[0]!, replicas[2]!, joiner].map((r) => Deferred.await(r.exited)), {
          concurrency: "unbounded"
        }).pipe(Effect.timeout("30 seconds"))
        assert.deepStrictEqual(exits.map((exit) => exit.code), [0, 0, 0])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 300_000 }
  )
})
