import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, Outbox, OutboxRelay, Topic, TopicAdmin } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as LocalKafka from "../../../scripts/kafka/LocalKafka.ts"
import { appliedCount, appliedTwice, DatabaseLive, event, eventually, recordApplied, TestEvent } from "./utils.ts"

// The 3-node cluster of scripts/kafka/cluster.sh (CI starts it; otherwise it is started here and
// stopped afterwards). One file holds every test that uses it, so no other file stops it under them.
const ClusterLive = Layer.scopedDiscard(LocalKafka.ensure(LocalKafka.cluster))

const ClientLive = KafkaClient.layer({
  brokers: LocalKafka.cluster.brokers,
  clientId: "cluster-test",
  connectionTimeout: 1_000,
  // Enough reconnects to outlast one broker's restart; a real outage still surfaces.
  retries: 10
})
const KafkaLive = Layer.mergeAll(Admin.layer, Producer.layer(), DeadLetter.layer.pipe(Layer.provide(DatabaseLive)))
  .pipe(Layer.provideMerge(ClientLive))

const TestLive = Layer.mergeAll(KafkaLive, DatabaseLive).pipe(Layer.provideMerge(ClusterLive))

const clusterTopic = (prefix: string, options: { partitions: number; replicationFactor?: number }) => {
  const name = TestKafka.uniqueName(prefix)
  return Topic.make({
    name,
    partitions: options.partitions,
    ...(options.replicationFactor !== undefined ? { replicationFactor: options.replicationFactor } : {}),
    retention: "1 hour",
    schema: TestEvent,
    key: (e) => e.key,
    deadLetter: { name: `${name}.DLT`, retention: "1 hour" }
  })
}

const strict = (on: boolean) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["KAFKA_TOPICS_STRICT", String(on)]])))

/** Applied rows in apply order must carry each key's seq in increasing order. */
const orderViolations = Effect.flatMap(SqlClient, (sql) =>
  sql<{ messageKey: string; seq: number; previous: number }>`
    SELECT message_key, seq, previous FROM (
      SELECT message_key, seq, lag(seq) OVER (PARTITION BY consumer_group, message_key ORDER BY id) AS previous
      FROM applied) ordered
    WHERE previous IS NOT NULL AND seq <= previous`)

const outboxStatuses = Effect.flatMap(
  SqlClient,
  (sql) => sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM kpipe_outbox GROUP BY status`
)

/** The node leading most partitions of `topic`, and how many it leads. */
const busiestLeader = (topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.describeTopics([topic])).pipe(
    Effect.map(([description]) => {
      const counts = new Map<number, number>()
      for (const { leader } of description!.partitions) counts.set(leader, (counts.get(leader) ?? 0) + 1)
      return [...counts].sort((a, b) => b[1] - a[1])[0]!
    })
  )

layer(TestLive, { timeout: 180_000, excludeTestServices: true })("3-broker cluster", (it) => {
  it.effect("TopicAdmin creates RF 3 / min ISR 2 by default and reports a topic left at RF 1", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const good = clusterTopic("cluster-default", { partitions: 3 })
      yield* TopicAdmin.create([good]).pipe(strict(true))
      const [description] = yield* admin.describeTopics([good.name])
      assert.deepStrictEqual(description!.partitions.map((p) => p.replicas.length), [3, 3, 3])
      assert.strictEqual((yield* admin.topicConfigs([good.name])).get(good.name)?.["min.insync.replicas"], "2")
      assert.deepStrictEqual(yield* TopicAdmin.verify([good]), [])

      // Created by hand at RF 1, as the single-broker defaults would have.
      const drifted = clusterTopic("cluster-rf1", { partitions: 2 })
      yield* admin.createTopics([{ name: drifted.name, partitions: 2, replicationFactor: 1 }])
      const error = yield* TopicAdmin.create([drifted]).pipe(strict(true), Effect.flip)
      assert.strictEqual(error._tag, "TopicSettingsError", error.message)
      if (error._tag === "TopicSettingsError") {
        const own = error.mismatches.filter((m) => m.topic === drifted.name).map((
          m
        ) => [m.setting, m.expected, m.actual])
        // min.insync.replicas is the cluster's default (2) here, so only these differ.
        assert.deepStrictEqual(own.sort(), [
          ["replicationFactor", "3", "1"],
          ["retention.ms", "3600000", "604800000"]
        ])
      }
      // The strict run created the missing dead-letter topic before it failed on the drifted one.
      assert.deepStrictEqual(
        (yield* TopicAdmin.verify([drifted])).map((m) => m.topic).filter((name) => name !== drifted.name),
        []
      )
      // Not strict (development): the same report is a warning and startup goes on.
      assert.deepStrictEqual(yield* TopicAdmin.create([drifted]).pipe(strict(false)), [])
      yield* admin.deleteTopics([good.name, good.deadLetter.name, drifted.name, drifted.deadLetter.name])
    }))

  it.effect(
    "SIGKILL of the busiest leader mid-flow: outbox -> relay -> Kafka -> consumer loses nothing, applies nothing twice, keeps key order",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const admin = yield* Admin.Admin
        const topic = clusterTopic("failover", { partitions: 6, replicationFactor: 3 })
        yield* TopicAdmin.create([topic]).pipe(strict(true))
        const group = TestKafka.uniqueName("failover-group")

        yield* OutboxRelay.run({ batchSize: 50, pollInterval: "100 millis" })
        yield* IdempotentConsumer.run({
          topic,
          groupId: group,
          handle: recordApplied(group),
          errors: { SqlError: "retry" },
          batchSize: 50,
          kafka: TestKafka.fastConsumer
        })

        const keys = 24
        const transactions = 120
        const perTransaction = 10
        const total = transactions * perTransaction
        let appended = 0
        const appender = yield* Effect.forkScoped(Effect.gen(function*() {
          for (let tx = 0; tx < transactions; tx++) {
            const events = Array.from({ length: perTransaction }, (_, i) => {
              const n = tx * perTransaction + i
              return event(`key-${n % keys}`, Math.floor(n / keys))
            })
            yield* sql.withTransaction(Outbox.append(topic, ...events))
            appended += events.length
            yield* Effect.sleep("25 millis")
          }
        }))

        yield* eventually(Effect.map(appliedCount(group), (n) => n >= total / 4))
        const [leader, led] = yield* busiestLeader(topic.name)
        const appendedAtKill = appended
        const killedAt = Date.now()
        yield* LocalKafka.kill(LocalKafka.cluster, leader)
        yield* Effect.logInfo(`killed node ${leader}, leader of ${led}/6 partitions, after ${appendedAtKill} events`)

        // Applied count past what existed at the kill: an event appended after it went all the way through.
        const recovered = yield* eventually(
          Effect.map(appliedCount(group), (n) => n > appendedAtKill),
          "30 seconds",
          "an event appended after the kill applied"
        ).pipe(Effect.as(Date.now() - killedAt))

        yield* Effect.sleep("2 seconds")
        yield* LocalKafka.start(LocalKafka.cluster)
        yield* Fiber.join(appender)
        yield* eventually(Effect.map(appliedCount(group), (n) => n >= total), "60 seconds", "every event applied").pipe(
          Effect.tapError(() =>
            Effect.gen(function*() {
              const missing = yield* sql<{ eventId: string; messageKey: string }>`
                SELECT event_id, message_key FROM kpipe_outbox o WHERE NOT EXISTS (
                  SELECT 1 FROM applied a WHERE a.event_id = o.event_id AND a.consumer_group = ${group})`
              const committed = yield* admin.committedOffsets(group, topic.name)
              const ends = yield* admin.endOffsets(topic.name)
              const state = yield* Effect.all([appliedCount(group), outboxStatuses])
              yield* Effect.logError("stuck", JSON.stringify({ state, missing: missing.length, committed, ends }))
              const records = yield* TestKafka.readTopic(topic.name, total, "2 seconds").pipe(
                Effect.orElseSucceed(() => [])
              )
              const found = records.filter((r) => missing.some((m) => r.headers["kpipe-event-id"] === m.eventId)).map((
                r
              ) => ({ partition: r.partition, offset: r.offset }))
              yield* Effect.logError("missing records", JSON.stringify({ found, records: records.length }))
            }).pipe(Effect.catchAllCause(Effect.logError))
          )
        )
        yield* Effect.sleep("1 second")

        assert.strictEqual(yield* appliedCount(group), total, "every event applied")
        assert.deepStrictEqual(yield* appliedTwice(group), [], "no event applied twice")
        assert.deepStrictEqual(yield* orderViolations, [], "each key in order")
        assert.deepStrictEqual(yield* outboxStatuses, [{ status: "PUBLISHED", n: total }], "nothing FAILED")
        const deadLettered = yield* admin.endOffsets(topic.deadLetter.name)
        assert.isTrue(deadLettered.every(({ high, low }) => high === low), "nothing dead-lettered")
        assert.isAtMost(recovered, 10_000, `recovered ${recovered} ms after the kill`)
        yield* Effect.logInfo(`recovered ${recovered} ms after the kill`)

        const [after] = yield* admin.describeTopics([topic.name])
        yield* eventually(
          Effect.map(
            admin.describeTopics([topic.name]),
            ([description]) => description!.partitions.every((p) => p.isr.length === 3)
          ),
          "30 seconds",
          "the restarted broker back in every ISR"
        )
        assert.strictEqual(after!.partitions.length, 6)
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
