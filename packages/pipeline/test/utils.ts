import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { Admin, type Consumer, KafkaClient, Producer } from "@kpipe/kafka"
import { DeadLetter, PipelineMigrations, RetryPolicy, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { Eventually, TestKafka, TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

export class TestEvent extends Schema.Class<TestEvent>("TestEvent")({
  type: Schema.tag("TestEvent"),
  version: Schema.Literal(1).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1 as const)),
  eventId: Schema.String,
  key: Schema.String,
  seq: Schema.Int,
  data: Schema.optionalWith(Schema.String, { exact: true })
}) {}

export const makeTopic = (prefix: string, partitions = 3) => topicNamed(TestKafka.uniqueName(prefix), partitions)

export const topicNamed = (name: string, partitions = 3) =>
  Topic.make({
    name,
    partitions,
    retention: "1 hour",
    schema: TestEvent,
    key: (event) => event.key,
    deadLetter: { name: `${name}.DLT`, retention: "1 hour" }
  })

/** The handler of these tests: records that `group` applied the event, in the consumer's transaction. */
export const recordApplied = (group: string) => (event: TestEvent) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql`INSERT INTO applied ${
        sql.insert({ consumerGroup: group, eventId: event.eventId, messageKey: event.key, seq: event.seq })
      }`.pipe(Effect.asVoid)
  )

export const appliedCount = (group: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM applied WHERE consumer_group = ${group}`
  ).pipe(
    Effect.map((rows) => rows[0]!.n)
  )

/** Events applied more than once by `group` (must stay empty). */
export const appliedTwice = (group: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ eventId: string; n: number }>`
      SELECT event_id, count(*)::int AS n FROM applied WHERE consumer_group = ${group}
      GROUP BY event_id HAVING count(*) > 1`)

/** Sends events straight to Kafka (as a producer that retried would, duplicates included). */
export const produce = <I>(topic: Topic.Topic<TestEvent, I>, events: ReadonlyArray<TestEvent>) =>
  Effect.gen(function*() {
    const producer = yield* Producer.Producer
    const messages = yield* Effect.forEach(
      events,
      (e) => Effect.map(topic.encode(e), (value) => ({ key: topic.key(e), value }))
    )
    yield* producer.send({ topic: topic.name, messages })
  })

export const eventually = Eventually.eventually

export const fastRetry = RetryPolicy.make({ initialDelay: "20 millis", factor: 2, maxRetries: 3 })

export const event = (key: string, seq: number, data?: string) =>
  new TestEvent({ eventId: crypto.randomUUID(), key, seq, ...(data !== undefined ? { data } : {}) })

/** What handlers in these tests write: one row per application of an event. */
export const appliedMigrations = {
  table: "kpipe_test_migrations",
  loader: Migrator.fromRecord({
    "0001_applied": Effect.flatMap(SqlClient, (sql) =>
      sql`CREATE TABLE applied (
        id BIGSERIAL PRIMARY KEY,
        consumer_group TEXT NOT NULL,
        event_id TEXT NOT NULL,
        message_key TEXT NOT NULL,
        seq INT NOT NULL
      )`),
    "0002_commit_witness": Effect.flatMap(
      SqlClient,
      (sql) => sql`CREATE TABLE commit_witness (message_key TEXT PRIMARY KEY, n INT NOT NULL)`
    )
  })
}

export const KafkaLive = TestKafka.layer
export const DatabaseLive = Database.layerTest([PipelineMigrations.migrations, appliedMigrations])
export const PipelineLive = Layer.mergeAll(KafkaLive, DeadLetter.layer.pipe(Layer.provide(KafkaLive))).pipe(
  Layer.provideMerge(DatabaseLive),
  Layer.provideMerge(TestLogging.layer)
)

export const createTopics = (...topics: ReadonlyArray<Topic.Any>) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs(topics)))

export const readTopic = (topic: string, count: number) => TestKafka.readTopic(topic, count)

export const decodeValue = (record: Consumer.ConsumerRecord) =>
  Schema.decodeSync(Schema.parseJson(TestEvent))(record.value!.toString("utf8"))

export { KafkaClient, Producer }
