import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Admin, type Consumer } from "@kpipe/kafka"
import { IdempotentConsumer } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, TestKafka } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
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
  produce,
  Producer,
  readTopic,
  recordApplied,
  recordAppliedAll,
  type TestEvent,
  TestLive
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

/** The plain consumer of these tests: records each event it applies, retries SQL errors. */
const consumeApplied = (
  topic: ReturnType<typeof makeTopic>,
  group: string,
  options: Partial<IdempotentConsumer.Options<TestEvent, typeof TestEvent.Encoded, SqlError, SqlClient>> = {}
) =>
  IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, SqlError, SqlClient>({
    topic,
    groupId: group,
    handle: recordApplied(group),
    errors: { SqlError: "retry" },
    kafka: TestKafka.fastConsumer,
    ...options
  } as IdempotentConsumer.Options<TestEvent, typeof TestEvent.Encoded, SqlError, SqlClient>)

/** What a process that died between a dead letter's COMMIT and its send leaves behind. */
const leftUnsent = (
  group: string,
  topic: ReturnType<typeof makeTopic>,
  record: Consumer.ConsumerRecord,
  eventId: string
) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.zipRight(
      sql`INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome)
        VALUES (${group}, ${eventId}, ${topic.name}, ${record.partition}, ${record.offset}, 'DEAD_LETTERED')`,
      sql`INSERT INTO kpipe_dead_letters_unsent ${
        sql.insert({
          consumerGroup: group,
          topic: topic.name,
          partition: record.partition,
          offset: record.offset,
          messageKey: record.key,
          payload: record.value,
          headers: JSON.stringify(record.headers),
          eventId,
          eventType: "TestEvent",
          errorTag: "Rejected",
          errorMessage: "rejected before the crash",
          attempts: 1,
          firstAttemptAt: new Date(),
          lastAttemptAt: new Date(),
          deadLetterTopic: topic.deadLetter.name,
          originalTimestamp: record.timestamp
        })
      }`
    ))

class Flaky extends Data.TaggedError("Flaky")<{ readonly reason: string }> {}

class ProviderAway extends Data.TaggedError("ProviderAway")<{ readonly reason: string }> {}

class Overdrawn extends Data.TaggedError("Overdrawn")<{ readonly shortBy: bigint }> {}

/**
 * A consumer whose handler's dependency fails every other request (a `"wait"` error), recording the
 * events it gets through: how many requests it made, and how many times each `seq` was handled.
 */
const consumeWithFlakyDependency = (topic: ReturnType<typeof makeTopic>, group: string) =>
  Effect.gen(function*() {
    let requests = 0
    const handled = new Map<number, number>()
    yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, ProviderAway | SqlError, SqlClient>({
      topic,
      groupId: group,
      handle: (event) =>
        Effect.suspend((): Effect.Effect<void, ProviderAway | SqlError, SqlClient> => {
          handled.set(event.seq, (handled.get(event.seq) ?? 0) + 1)
          return ++requests % 2 === 0
            ? Effect.fail(new ProviderAway({ reason: "503 from the provider" }))
            : recordApplied(group)(event)
        }),
      errors: { SqlError: "retry", ProviderAway: "wait" },
      retry: fastRetry,
      kafka: TestKafka.fastConsumer
    })
    return { requests: () => requests, handled }
  })

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

        yield* consumeApplied(topic, group, { retry: fastRetry, batchSize: 5 })
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
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a database that refuses writes for a while (read-only after a failover) blocks the partitions; nothing is dead-lettered",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-consumer-read-only")
        const group = TestKafka.uniqueName("faults-read-only")
        yield* createTopics(topic)
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const url = yield* Database.url
        // Retries used up in well under the outage: without waiting, the events would be dead-lettered.
        yield* consumeApplied(topic, group, { retry: fastRetry, batchSize: 5 })
        yield* produce(topic, [event("k0", 1)])
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1), "30 seconds", "first event applied")

        yield* Effect.scoped(Effect.gen(function*() {
          yield* DatabaseFaults.readOnly(url, current!.database)
          yield* produce(topic, Array.from({ length: 10 }, (_, i) => event(`k${i % 5}`, 2 + Math.floor(i / 5))))
          yield* Effect.sleep("5 seconds")
        }))
        yield* eventually(
          Effect.map(appliedCount(group), (n) => n === 11).pipe(Effect.orElseSucceed(() => false)),
          "40 seconds",
          "applied once writes are taken again"
        )
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})

describe("IdempotentConsumer under the server's timeouts", () => {
  it.live(
    "a row another session holds past lock_timeout (55P03) blocks the partition until it is released; nothing is dead-lettered",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-lock-timeout")
        const group = TestKafka.uniqueName("faults-lock-timeout")
        yield* createTopics(topic)
        yield* sql`CREATE TABLE stock (product_id INT PRIMARY KEY, units INT NOT NULL)`
        yield* sql`INSERT INTO stock VALUES (1, 0)`
        // The handler runs as under a production lock_timeout: a row held by another session fails it fast.
        const takeStock = (e: TestEvent) =>
          sql`SET LOCAL lock_timeout = '100ms'`.pipe(
            Effect.zipRight(sql`UPDATE stock SET units = units + 1 WHERE product_id = 1`),
            Effect.zipRight(recordApplied(group)(e))
          )
        yield* consumeApplied(topic, group, { retry: fastRetry, handle: takeStock, batchSize: 5 })
        yield* produce(topic, [event("k0", 1)])
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1), "30 seconds", "first event applied")

        const held = yield* Deferred.make<void>()
        const holder = yield* sql.withTransaction(
          sql`SELECT units FROM stock WHERE product_id = 1 FOR UPDATE`.pipe(
            Effect.zipRight(Deferred.succeed(held, undefined)),
            Effect.zipRight(Effect.sleep("4 seconds"))
          )
        ).pipe(Effect.fork)
        yield* Deferred.await(held)
        // Retries used up many times over while the row is held: without waiting, these would be dead-lettered.
        yield* produce(topic, Array.from({ length: 6 }, (_, i) => event(`k${i % 3}`, 2 + Math.floor(i / 3))))
        yield* Effect.sleep("2 seconds")
        assert.strictEqual(yield* appliedCount(group), 1, "nothing applied while the row is held")
        yield* holder.await
        yield* eventually(
          Effect.map(appliedCount(group), (n) => n === 7).pipe(Effect.orElseSucceed(() => false)),
          "40 seconds",
          "applied once the row is released"
        )
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
        const [stock] = yield* sql<{ units: number }>`SELECT units FROM stock WHERE product_id = 1`
        assert.strictEqual(stock!.units, 7)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})

describe("IdempotentConsumer batches under the server's timeouts", () => {
  it.live(
    "a batch that meets statement_timeout (57014) only for its size is split, not tried again whole for ever",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-statement-timeout")
        const group = TestKafka.uniqueName("faults-statement-timeout")
        yield* createTopics(topic)
        // 40 ms of work per event under a 150 ms statement_timeout: a batch of 4 or more times out, one event never.
        const slowBatch = (delivered: ReadonlyArray<{ readonly event: TestEvent }>) =>
          sql`SET LOCAL statement_timeout = '150ms'`.pipe(
            Effect.zipRight(sql`SELECT pg_sleep(${0.04 * delivered.length})`),
            Effect.zipRight(recordAppliedAll(group)(delivered))
          )
        yield* produce(topic, Array.from({ length: 12 }, (_, i) => event(`k${i % 3}`, 1 + Math.floor(i / 3))))
        yield* consumeApplied(topic, group, {
          retry: fastRetry,
          handle: undefined,
          handleBatch: slowBatch,
          batchSize: 12
        })
        yield* eventually(
          Effect.map(appliedCount(group), (n) => n === 12).pipe(Effect.orElseSucceed(() => false)),
          "40 seconds",
          "every event applied, one at a time"
        )
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})

class Rejected extends Data.TaggedError("Rejected")<{ readonly reason: string }> {}

const deadLetterRecords = (topic: ReturnType<typeof makeTopic>, settle: Duration.DurationInput = "2 seconds") =>
  Effect.flatMap(Admin.Admin, (admin) => admin.endOffsets(topic.deadLetter.name)).pipe(
    Effect.map((partitions) => partitions.reduce((n, p) => n + Number(p.high) - Number(p.low), 0)),
    Effect.delay(settle)
  )

describe("IdempotentConsumer dead letters under faults", () => {
  it.live(
    "a COMMIT that fails after a dead letter was decided: dead-lettered once, never also applied",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-dlt-commit")
        const group = TestKafka.uniqueName("faults-dlt-commit")
        yield* createTopics(topic)
        // The first transaction that claims an event as dead-lettered fails at COMMIT (a deferred trigger; the
        // sequence is not rolled back with it).
        yield* sql`CREATE SEQUENCE commit_faults`
        yield* sql`CREATE FUNCTION fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF nextval('commit_faults') = 1 THEN RAISE EXCEPTION 'injected COMMIT failure'; END IF;
          RETURN NULL;
        END $$`
        yield* sql`CREATE CONSTRAINT TRIGGER fail_first_commit AFTER INSERT ON kpipe_processed_events
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.outcome = 'DEAD_LETTERED')
          EXECUTE FUNCTION fail_first_commit()`
        let attempts = 0
        const rejectedOnce = (e: TestEvent) =>
          Effect.suspend((): Effect.Effect<void, Rejected | SqlError, SqlClient> =>
            attempts++ === 0 ? Effect.fail(new Rejected({ reason: "first attempt" })) : recordApplied(group)(e)
          )
        const poisoned = event("k", 1)
        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Rejected | SqlError, SqlClient>({
          topic,
          groupId: group,
          handle: rejectedOnce,
          errors: { SqlError: "retry", Rejected: "deadLetter" },
          retry: fastRetry,
          kafka: TestKafka.fastConsumer
        })
        yield* produce(topic, [poisoned, event("k", 2)])
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1), "30 seconds", "the next event applied")
        assert.strictEqual(yield* deadLetterRecords(topic), 1, "dead-lettered once")
        const applied = yield* sql<{ eventId: string }>`SELECT event_id FROM applied WHERE consumer_group = ${group}`
        assert.notInclude(applied.map((row) => row.eventId), poisoned.eventId, "never also applied")
        const [claim] = yield* sql<{ outcome: string }>`
        SELECT outcome FROM kpipe_processed_events WHERE consumer_group = ${group} AND event_id = ${poisoned.eventId}`
        assert.strictEqual(claim?.outcome, "DEAD_LETTERED")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a dead letter recorded but never sent (the process died after COMMIT) is sent on redelivery",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-dlt-unsent")
        const group = TestKafka.uniqueName("faults-dlt-unsent")
        yield* createTopics(topic)
        const lost = event("k", 1)
        yield* produce(topic, [lost])
        const [record] = yield* readTopic(topic.name, 1)
        yield* leftUnsent(group, topic, record!, lost.eventId)
        yield* consumeApplied(topic, group)
        const letters = yield* readTopic(topic.deadLetter.name, 1)
        assert.strictEqual(letters[0]!.headers["kpipe-dlt-event-id"], lost.eventId)
        assert.strictEqual(letters[0]!.headers["kpipe-dlt-error-message"], "rejected before the crash")
        yield* eventually(
          Effect.map(
            sql<{ failed: number; unsent: number }>`SELECT
              (SELECT count(*)::int FROM kpipe_failed_events) AS failed,
              (SELECT count(*)::int FROM kpipe_dead_letters_unsent) AS unsent`,
            (rows) => rows[0]!.failed === 1 && rows[0]!.unsent === 0
          ),
          "10 seconds",
          "moved to the failed events once sent"
        )
        assert.strictEqual(yield* appliedCount(group), 0, "not applied")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a dead letter left unsent is sent when its redelivery comes back in a batch that fails and is applied record by record",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-dlt-unsent-batch", 1)
        const group = TestKafka.uniqueName("faults-dlt-unsent-batch")
        yield* createTopics(topic)
        const lost = event("k", 1)
        const after = [event("k", 2), event("k", 3)]
        yield* produce(topic, [lost, ...after])
        const [record] = yield* readTopic(topic.name, 1)
        yield* leftUnsent(group, topic, record!, lost.eventId)
        let batches = 0
        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Flaky | SqlError, SqlClient>({
          topic,
          groupId: group,
          // The first transaction (two new events: which one failed is unknown) fails, so the run
          // is applied again record by record, the unsent letter's duplicate among them.
          handleBatch: (delivered) =>
            batches++ === 0
              ? Effect.fail(new Flaky({ reason: "first batch" }))
              : Effect.forEach(delivered, ({ event }) => recordApplied(group)(event), { discard: true }),
          errors: { SqlError: "retry", Flaky: "retry" },
          retry: fastRetry,
          kafka: TestKafka.fastConsumer
        })
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 2), "30 seconds", "the events after it applied")
        const letters = yield* readTopic(topic.deadLetter.name, 1)
        assert.strictEqual(letters[0]!.headers["kpipe-dlt-event-id"], lost.eventId)
        yield* eventually(
          Effect.map(
            sql<{ unsent: number }>`SELECT count(*)::int AS unsent FROM kpipe_dead_letters_unsent`,
            (rows) => rows[0]!.unsent === 0
          ),
          "10 seconds",
          "no letter left unsent"
        )
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a handler error whose fields do not serialize (a bigint) is dead-lettered, not a crash of the consumer",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-bigint-error", 1)
        const group = TestKafka.uniqueName("faults-bigint-error")
        yield* createTopics(topic)
        const poisoned = event("k", 1)
        yield* produce(topic, [poisoned, event("k", 2)])
        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Overdrawn | SqlError, SqlClient>({
          topic,
          groupId: group,
          handle: (e) => e.seq === 1 ? Effect.fail(new Overdrawn({ shortBy: 5n })) : recordApplied(group)(e),
          errors: { SqlError: "retry", Overdrawn: "deadLetter" },
          retry: fastRetry,
          kafka: TestKafka.fastConsumer
        })
        const [letter] = yield* readTopic(topic.deadLetter.name, 1)
        assert.strictEqual(letter!.headers["kpipe-dlt-event-id"], poisoned.eventId)
        assert.strictEqual(letter!.headers["kpipe-dlt-error-tag"], "Overdrawn")
        assert.include(letter!.headers["kpipe-dlt-error-message"], "\"shortBy\":\"5\"")
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1), "30 seconds", "the event after it applied")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "an error declared \"wait\" (a provider away) blocks the partition past the retry policy and is never dead-lettered",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-wait", 1)
        const group = TestKafka.uniqueName("faults-wait")
        yield* createTopics(topic)
        const blockedBefore = (yield* Metric.value(IdempotentConsumer.blockedRetriesTotal)).count
        // More failures than the policy's 4 attempts: a "retry" error would be dead-lettered.
        let failures = 6
        const waiting = event("k", 1)
        yield* produce(topic, [waiting, event("k", 2)])
        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, ProviderAway | SqlError, SqlClient>({
          topic,
          groupId: group,
          handle: (e) =>
            e.seq === 1 && failures-- > 0
              ? Effect.fail(new ProviderAway({ reason: "connect ECONNREFUSED" }))
              : recordApplied(group)(e),
          errors: { SqlError: "retry", ProviderAway: "wait" },
          retry: fastRetry,
          kafka: TestKafka.fastConsumer
        })
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 2), "40 seconds", "both applied")
        assert.strictEqual(failures, -1, "the handler ran 7 times")
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [], "the key kept its order")
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
        assert.isAbove((yield* Metric.value(IdempotentConsumer.blockedRetriesTotal)).count, blockedBefore)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a run whose connection is lost is applied again whole once the database answers, not one record at a time",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-run-whole", 1)
        const group = TestKafka.uniqueName("faults-run-whole")
        yield* createTopics(topic)
        const events = Array.from({ length: 20 }, (_, i) => event("k", i + 1))
        yield* produce(topic, events)
        const sizes: Array<number> = []
        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, SqlError, SqlClient>({
          topic,
          groupId: group,
          handleBatch: (delivered) =>
            Effect.suspend(() => {
              sizes.push(delivered.length)
              // The first transaction's session is terminated under it, as by a failover.
              return sizes.length === 1
                ? Effect.asVoid(sql`SELECT pg_terminate_backend(pg_backend_pid())`)
                : Effect.forEach(delivered, ({ event }) => recordApplied(group)(event), { discard: true })
            }),
          errors: { SqlError: "retry" },
          retry: fastRetry,
          kafka: TestKafka.fastConsumer
        })
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 20), "30 seconds", "all applied")
        assert.deepStrictEqual(sizes, [20, 20], "one failed transaction, then one that applied the run")
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [], "the key kept its order")
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a dependency failing every other request does not keep a run from committing: the records before the waiting one commit, and are not redone",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-run-flaky", 1)
        const group = TestKafka.uniqueName("faults-run-flaky")
        yield* createTopics(topic)
        const events = Array.from({ length: 20 }, (_, i) => event("k", i + 1))
        yield* produce(topic, events)
        const { handled } = yield* consumeWithFlakyDependency(topic, group)
        // Tried again whole, the run would fail at its second record forever.
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 20), "30 seconds", "all applied")
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [], "the key kept its order")
        assert.deepStrictEqual(yield* appliedTwice(group), [], "each applied once")
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
        assert.isAtMost(Math.max(...handled.values()), 3, "no record redone for each wait of another")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a run tried again whole after the database came back splits once a record's dependency waits",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-run-back-flaky", 1)
        const group = TestKafka.uniqueName("faults-run-back-flaky")
        yield* createTopics(topic)
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const url = yield* Database.url
        const { requests } = yield* consumeWithFlakyDependency(topic, group)
        // The run's claim fails while the database refuses connections: the run waits whole.
        yield* Effect.scoped(Effect.gen(function*() {
          yield* DatabaseFaults.refuseConnections(url, current!.database)
          yield* produce(topic, Array.from({ length: 20 }, (_, i) => event("k", i + 1)))
          yield* Effect.sleep("3 seconds")
        }))
        assert.strictEqual(requests(), 0, "no handler ran while the database refused connections")
        // Then the dependency fails every other request: tried whole again and again, it would never commit.
        yield* eventually(
          Effect.map(appliedCount(group), (n) => n === 20).pipe(Effect.orElseSucceed(() => false)),
          "30 seconds",
          "all applied"
        )
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [], "the key kept its order")
        assert.deepStrictEqual(yield* appliedTwice(group), [], "each applied once")
        assert.strictEqual(yield* failedEvents, 0, "nothing dead-lettered")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "an undecodable record near the broker's size limit is dead-lettered (its error text capped), not stuck",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-dlt-large", 1)
        const group = TestKafka.uniqueName("faults-dlt-large")
        yield* createTopics(topic)
        const producer = yield* Producer.Producer
        // Valid JSON, not an event: the parse error quotes the whole value.
        const huge = JSON.stringify("x".repeat(700_000))
        yield* producer.send({ topic: topic.name, messages: [{ key: "big", value: huge }] })
        yield* produce(topic, [event("after", 1)])
        yield* consumeApplied(topic, group)
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1), "30 seconds", "the record behind it applied")
        const [letter] = yield* readTopic(topic.deadLetter.name, 1)
        assert.strictEqual(letter!.value!.toString(), huge, "the value untouched")
        assert.isBelow(letter!.headers["kpipe-dlt-error-message"]!.length, 3_000)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})

describe("IdempotentConsumer claim retention", () => {
  it.live(
    "claims older than the retention are deleted by the running consumer; recent ones stay",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("claims-retention")
        const group = TestKafka.uniqueName("claims-retention")
        yield* createTopics(topic)
        const claim = (eventId: string, age: string) =>
          sql`INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome, processed_at)
          VALUES (${group}, ${eventId}, ${topic.name}, 0, 0, 'APPLIED', now() - ${age}::interval)`
        yield* claim("old-1", "3 days")
        yield* claim("old-2", "2 days")
        yield* claim("recent", "1 hour")
        yield* consumeApplied(topic, group, { claimRetention: "1 day", cleanupInterval: "200 millis" })
        yield* eventually(
          Effect.map(
            sql<{ eventId: string }>`SELECT event_id FROM kpipe_processed_events WHERE consumer_group = ${group}`,
            (rows) => rows.length === 1 && rows[0]!.eventId === "recent"
          ),
          "10 seconds",
          "old claims deleted"
        )
        yield* claim("old-3", "5 days")
        assert.strictEqual(yield* IdempotentConsumer.cleanupClaims(group, topic.name, "1 day"), 1)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "by default claims are kept for as long as a record can be redelivered: the topic's retention, plus its segment time, plus a day",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        // Retention 1 hour, so segments of 1 hour: a record stays readable for up to 2 hours.
        const topic = makeTopic("claims-default-retention")
        assert.strictEqual(Duration.toMillis(topic.segment), Duration.toMillis(Duration.hours(1)))
        const group = TestKafka.uniqueName("claims-default-retention")
        yield* createTopics(topic)
        const claim = (eventId: string, age: string) =>
          sql`INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome, processed_at)
          VALUES (${group}, ${eventId}, ${topic.name}, 0, 0, 'APPLIED', now() - ${age}::interval)`
        // Past retention + a day, but its record may still be in a segment the broker keeps.
        yield* claim("within", "25 hours 30 minutes")
        yield* claim("past", "26 hours 30 minutes")
        yield* consumeApplied(topic, group, { cleanupInterval: "200 millis" })
        yield* eventually(
          Effect.map(
            sql<{ eventId: string }>`SELECT event_id FROM kpipe_processed_events WHERE consumer_group = ${group}`,
            (rows) => !rows.some((row) => row.eventId === "past")
          ),
          "10 seconds",
          "the claim past retention + segment + a day deleted"
        )
        const left = yield* sql<{ eventId: string }>`
          SELECT event_id FROM kpipe_processed_events WHERE consumer_group = ${group}`
        assert.deepStrictEqual(left.map((row) => row.eventId), ["within"])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})

describe("IdempotentConsumer in a rebalance", () => {
  it.live(
    "a member joining while a batch is stuck interrupts that batch: the group rebalances in seconds, not after its rebalance timeout, and every event is applied once",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const topic = makeTopic("rebalance", 2)
        const group = TestKafka.uniqueName("rebalance")
        yield* createTopics(topic)
        const events = Array.from({ length: 24 }, (_, i) => event(`key-${i % 8}`, i))
        // Long enough that waiting for it would fail the test's own bounds below.
        const kafka = { ...TestKafka.fastConsumer, rebalanceTimeout: 60_000 }
        const held = yield* Deferred.make<string>()
        const interrupted = yield* Deferred.make<void>()
        let holdNext = true
        const holdFirst = (e: TestEvent) => {
          if (!holdNext) return recordApplied(group)(e)
          holdNext = false
          return Deferred.succeed(held, e.eventId).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
        }
        yield* consumeApplied(topic, group, { handle: holdFirst, kafka })
        yield* produce(topic, events)
        const heldId = yield* Deferred.await(held).pipe(Effect.timeout("30 seconds"))

        const joinedAt = Date.now()
        yield* consumeApplied(topic, group, { kafka })
        yield* Deferred.await(interrupted).pipe(Effect.timeout("15 seconds"))
        yield* eventually(
          Effect.map(admin.describeGroup(group), (g) => g.state === "Stable" && g.memberIds.length === 2),
          "15 seconds",
          "both members in a stable group"
        )
        yield* eventually(Effect.map(appliedCount(group), (n) => n === events.length), "15 seconds", "all applied")
        assert.isBelow(Date.now() - joinedAt, 30_000, "recovered well before the rebalance timeout")
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        assert.include(events.map((e) => e.eventId), heldId)
        assert.deepStrictEqual(yield* outOfOrderKeys(group), [])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 120_000 }
  )
})
