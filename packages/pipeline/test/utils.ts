import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { Admin, type Consumer, KafkaClient, Producer } from "@kpipe/kafka"
import { DeadLetter, PipelineMigrations, RetryPolicy, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { Eventually, TestKafka, TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
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

/** A batch handler's write: a row per event into `applied`, in one statement; `by` names the replica. */
export const recordAppliedAll =
  (group: string, by = "test") => (delivered: ReadonlyArray<{ readonly event: TestEvent }>) =>
    Effect.flatMap(
      SqlClient,
      (sql) =>
        sql`INSERT INTO applied ${
          sql.insert(delivered.map(({ event }) => ({
            consumerGroup: group,
            eventId: event.eventId,
            messageKey: event.key,
            seq: event.seq,
            appliedBy: by
          })))
        }`.pipe(Effect.asVoid)
    )

/**
 * The handler of these tests: records that `group` applied the event, in the consumer's
 * transaction; `by` names the replica that applied it.
 */
export const recordApplied = (group: string, by = "test") => (event: TestEvent) =>
  recordAppliedAll(group, by)([{ event }])

export const appliedBy = (group: string, by: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM applied WHERE consumer_group = ${group} AND applied_by = ${by}`
  ).pipe(Effect.map((rows) => rows[0]!.n))

/** The event ids `group` applied, one per application. */
export const appliedIds = (group: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql<{ eventId: string }>`SELECT event_id FROM applied WHERE consumer_group = ${group}`
  ).pipe(Effect.map((rows) => rows.map((row) => row.eventId)))

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

/** How many sessions of the test's database listen for outbox notifications (a running relay has one). */
export const listeningSessions = Effect.flatMap(
  SqlClient,
  (sql) =>
    sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND query ILIKE 'LISTEN %kpipe_outbox%'`
).pipe(
  Effect.map((rows) => rows[0]!.n)
)

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
    ),
    "0003_applied_by": Effect.flatMap(
      SqlClient,
      (sql) => sql`ALTER TABLE applied ADD COLUMN applied_by TEXT NOT NULL DEFAULT 'test'`
    ),
    // The fault matrix looks up which of the events it waits for are applied, while they are applied.
    "0004_applied_event": Effect.flatMap(
      SqlClient,
      (sql) => sql`CREATE INDEX applied_event ON applied (consumer_group, event_id)`
    ),
    // When each event was applied, so that the matrix reads when the last one it waited for was
    // applied instead of polling for it often (the polls took the CPU the pipeline drains with).
    "0005_applied_at": Effect.flatMap(
      SqlClient,
      (sql) => sql`ALTER TABLE applied ADD COLUMN applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()`
    )
  })
}

export const KafkaLive = TestKafka.layer
export const DatabaseLive = Database.layerTest([PipelineMigrations.migrations, appliedMigrations])
export const TestLive = Layer.mergeAll(KafkaLive, DeadLetter.layer.pipe(Layer.provide(KafkaLive))).pipe(
  Layer.provideMerge(DatabaseLive),
  Layer.provideMerge(TestLogging.layer)
)

export const createTopics = (...topics: ReadonlyArray<Topic.Any>) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs(topics)))

export const readTopic = (topic: string, count: number) => TestKafka.readTopic(topic, count)

export const committedTotal = (group: string, topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic)).pipe(
    Effect.map((offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0))
  )

/** Partitions of `topic` not yet consumed by `group` (committed offset below the end). */
export const unconsumed = (group: string, topic: string) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const ends = yield* admin.endOffsets(topic)
    const committed = yield* admin.committedOffsets(group, topic)
    return ends.filter(({ high, partition }) =>
      Number(committed.find((c) => c.partition === partition)?.offset ?? -1) < Number(high)
    ).map(({ partition }) => partition)
  })

// A ConsumerProtocolAssignment: version, [topic, [partition]], user data (big-endian).
const decodeAssignment = (bytes: Buffer) => {
  const owned = new Map<string, Array<number>>()
  let at = 2
  const topics = bytes.readInt32BE(at)
  at += 4
  for (let t = 0; t < topics; t++) {
    const length = bytes.readInt16BE(at)
    const topic = bytes.toString("utf8", at + 2, at + 2 + length)
    at += 2 + length
    const count = bytes.readInt32BE(at)
    at += 4
    const partitions: Array<number> = []
    for (let p = 0; p < count; p++, at += 4) partitions.push(bytes.readInt32BE(at))
    owned.set(topic, partitions)
  }
  return owned
}

/** The partitions of `topic` each member of `group` owns, by client id. */
export const assignments = (group: string, topic: string) =>
  Effect.acquireUseRelease(
    Effect.flatMap(KafkaClient.KafkaClient, ({ kafka }) => {
      const client = kafka.admin()
      return Effect.as(Effect.promise(() => client.connect()), client)
    }),
    (client) =>
      Effect.promise(() => client.describeGroups([group])).pipe(
        Effect.map(({ groups }) =>
          new Map((groups[0]?.members ?? []).map((member) => [
            member.clientId,
            member.memberAssignment.length === 0 ? [] : decodeAssignment(member.memberAssignment).get(topic) ?? []
          ]))
        )
      ),
    (client) => Effect.promise(() => client.disconnect())
  )

/** A counter's value among the updates tagged `kpipe_test=<tag>` (see `Effect.tagMetrics`). */
export const counted = (counter: Metric.Metric.Counter<number>, tag: string) =>
  Effect.map(Metric.value(Metric.tagged(counter, "kpipe_test", tag)), (state) => state.count)

export const gauged = (gauge: Metric.Metric.Gauge<number>, tag: string) =>
  Effect.map(Metric.value(Metric.tagged(gauge, "kpipe_test", tag)), (state) => state.value)

export const decodeValue = (record: Consumer.ConsumerRecord) =>
  Schema.decodeSync(Schema.parseJson(TestEvent))(record.value!.toString("utf8"))

export { KafkaClient, Producer }
