import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { IdempotentConsumer } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import {
  appliedCount,
  appliedTwice,
  createTopics,
  event,
  eventually,
  fastRetry,
  makeTopic,
  PipelineLive,
  produce,
  recordApplied,
  type TestEvent
} from "./utils.ts"

const failedEvents = Effect.flatMap(
  SqlClient,
  (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_failed_events`
).pipe(Effect.map((rows) => rows[0]!.n))

/** Keys whose applied `seq`s are not increasing in the order they were applied (must stay empty). */
const outOfOrderKeys = (group: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ messageKey: string }>`
      SELECT message_key FROM (
        SELECT message_key, seq, lag(seq) OVER (PARTITION BY message_key ORDER BY id) AS previous
        FROM applied WHERE consumer_group = ${group}
      ) s WHERE previous IS NOT NULL AND seq < previous`).pipe(Effect.map((rows) => rows.map((row) => row.messageKey)))

describe("IdempotentConsumer under faults", () => {
  it.live(
    "a database refusing connections blocks the partitions; nothing is dead-lettered, all applied once, in order",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-consumer-db")
        const group = TestKafka.uniqueName("faults-db")
        yield* createTopics(topic)
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const url = yield* Database.url
        const blockedBefore = (yield* Metric.value(IdempotentConsumer.blockedRetriesTotal)).count
        const seqs = new Map<string, number>()
        const wave = (n: number) =>
          Array.from({ length: n }, (_, i) => {
            const key = `k${i % 5}`
            const seq = (seqs.get(key) ?? 0) + 1
            seqs.set(key, seq)
            return event(key, seq)
          })

        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, SqlError, SqlClient>({
          topic,
          groupId: group,
          handle: recordApplied(group),
          errors: { SqlError: "retry" },
          retry: fastRetry,
          batchSize: 5,
          kafka: TestKafka.fastConsumer
        })
        yield* produce(topic, wave(20))
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 20), "30 seconds", "first wave applied")

        yield* Effect.scoped(Effect.gen(function*() {
          yield* DatabaseFaults.refuseConnections(url, current!.database)
          yield* produce(topic, wave(20))
          yield* Effect.sleep("6 seconds")
        }))
        yield* eventually(
          Effect.map(appliedCount(group), (n) => n === 40).pipe(Effect.orElseSucceed(() => false)),
          "40 seconds",
          "second wave applied"
        )
        assert.isAbove((yield* Metric.value(IdempotentConsumer.blockedRetriesTotal)).count, blockedBefore)
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [])
      }).pipe(Effect.scoped, Effect.provide(PipelineLive)),
    { timeout: 90_000 }
  )
})
