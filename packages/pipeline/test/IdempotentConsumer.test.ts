import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import { DeadLetter, IdempotentConsumer } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ExactlyOnce, ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { fileURLToPath } from "node:url"
import {
  appliedBy,
  appliedCount,
  appliedIds,
  appliedTwice,
  assignments,
  committedTotal,
  counted,
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
  TestLive,
  topicNamed,
  unconsumed
} from "./utils.ts"

class Transient extends Data.TaggedError("Transient")<{ readonly attempt: number }> {}
class Rejected extends Data.TaggedError("Rejected")<{ readonly reason: string }> {}
class Blamed extends Data.TaggedError("Blamed")<{ readonly eventId: string }> {}

const consumerTimings = { ...TestKafka.fastConsumer }

interface Variant {
  readonly batchSize: number
  readonly handleBatch: boolean
}

const variants: ReadonlyArray<Variant> = [
  { batchSize: 1, handleBatch: false },
  { batchSize: 7, handleBatch: false },
  { batchSize: 100, handleBatch: true }
]

const exactlyOnce = ExactlyOnce.property<
  TestEvent,
  Variant,
  SqlClient | KafkaClient | Admin.Admin | DeadLetter.DeadLetterSink
>({
  topic: Effect.suspend(() => {
    const topic = makeTopic("exactly-once")
    return Effect.as(createTopics(topic), topic.name)
  }),
  event: (index, key) => event(key, index),
  encode: (e) => Effect.map(topicNamed("any").encode(e), (value) => ({ key: e.key, value })),
  consumer: ({ group, hold, topic, variant }) =>
    Layer.scopedDiscard(
      (variant.handleBatch
        ? IdempotentConsumer.run({
          topic: topicNamed(topic),
          groupId: group,
          handleBatch: (delivered) =>
            Effect.zipRight(
              Effect.forEach(delivered, ({ event }) => hold(event.eventId), { discard: true }),
              Effect.forEach(delivered, ({ event }) => recordApplied(group)(event), { discard: true })
            ),
          errors: { SqlError: "retry" },
          batchSize: variant.batchSize,
          kafka: consumerTimings
        })
        : IdempotentConsumer.run({
          topic: topicNamed(topic),
          groupId: group,
          handle: (e) => Effect.zipRight(hold(e.eventId), recordApplied(group)(e)),
          errors: { SqlError: "retry" },
          batchSize: variant.batchSize,
          kafka: consumerTimings
        })).pipe(Effect.tagMetrics("kpipe_test", group))
    ),
  applied: appliedIds,
  duplicates: (group) => counted(IdempotentConsumer.duplicatesTotal, group),
  variants
})

const consume = (
  topic: ReturnType<typeof makeTopic>,
  group: string,
  options: {
    readonly batchSize?: number
    readonly handle?: (e: TestEvent) => Effect.Effect<void, Transient | Rejected | SqlError, SqlClient>
    readonly afterCommit?: (applied: ReadonlyArray<TestEvent>) => Effect.Effect<void>
  } = {}
) =>
  IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Transient | Rejected | SqlError, SqlClient>({
    topic,
    groupId: group,
    handle: options.handle ?? recordApplied(group),
    errors: { SqlError: "retry", Transient: "retry", Rejected: "deadLetter" },
    retry: fastRetry,
    batchSize: options.batchSize,
    afterCommit: options.afterCommit,
    kafka: consumerTimings
  })

describe("IdempotentConsumer", () => {
  it.live.prop(
    "applies each distinct event exactly once per group, whatever the duplicates and redeliveries",
    ExactlyOnce.arbitraries(variants),
    ([sample]) => exactlyOnce(sample).pipe(Effect.provide(TestLive)),
    { timeout: 600_000, fastCheck: ExactlyOnce.runs(variants, 3) }
  )

  it.live(
    "retries a transient failure in place, then applies once, keeping the key's order",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("transient", 1)
        yield* createTopics(topic)
        const events = [event("k", 1), event("k", 2), event("k", 3)]
        yield* produce(topic, [...events, events[0]!])
        const group = TestKafka.uniqueName("transient")
        const attempts = new Map<string, number>()
        const committed: Array<number> = []
        yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: group,
            handle: (e: TestEvent) =>
              Effect.gen(function*() {
                const attempt = (attempts.get(e.eventId) ?? 0) + 1
                attempts.set(e.eventId, attempt)
                if (e.seq === 2 && attempt < 3) return yield* new Transient({ attempt })
                yield* recordApplied(group)(e)
              }),
            afterCommit: (applied) => Effect.sync(() => committed.push(...applied.map((e) => e.seq))),
            errors: { SqlError: "retry", Transient: "retry" },
            retry: fastRetry,
            kafka: consumerTimings
          })
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 4))
        }))
        const applied = yield* sql<{ seq: number }>`SELECT seq FROM applied WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(applied.map((row) => row.seq), [1, 2, 3])
        assert.strictEqual(attempts.get(events[1]!.eventId), 3)
        // afterCommit saw each event once: not the rolled-back first try of the batch, not the duplicate.
        assert.deepStrictEqual(committed, [1, 2, 3])
        assert.deepStrictEqual(yield* sql`SELECT * FROM kpipe_failed_events`, [])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "dead-letters a permanent failure with every header and a failed-events row, and goes on",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("permanent", 1)
        yield* createTopics(topic)
        const events = [event("k", 1), event("k", 2), event("k", 3)]
        const group = TestKafka.uniqueName("permanent")
        const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        const sentAt = "1700000000123"
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            batchSize: 10,
            handle: (e) =>
              e.seq === 2 ? Effect.fail(new Rejected({ reason: "member is blocked" })) : recordApplied(group)(e)
          })
          const producer = yield* Producer.Producer
          yield* producer.send({
            topic: topic.name,
            messages: yield* Effect.forEach(events, (e) =>
              Effect.map(topic.encode(e), (value) => ({
                key: e.key,
                value,
                ...(e.seq === 2 ? { headers: { traceparent, "x-origin": "test" }, timestamp: sentAt } : {})
              })))
          })
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 3))
        }))
        const applied = yield* sql<{ seq: number }>`SELECT seq FROM applied WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(applied.map((row) => row.seq), [1, 3])

        const [dead] = yield* readTopic(topic.deadLetter.name, 1)
        const { key, letter, value } = yield* DeadLetter.decode(dead!)
        assert.strictEqual(letter.originalTopic, topic.name)
        assert.strictEqual(letter.originalPartition, 0)
        assert.strictEqual(letter.originalOffset, "1")
        assert.strictEqual(letter.originalKey, "k")
        assert.strictEqual(letter.consumerGroup, group)
        assert.strictEqual(letter.errorTag, "Rejected")
        assert.strictEqual(letter.eventId, events[1]!.eventId)
        assert.strictEqual(letter.eventType, "TestEvent")
        assert.include(letter.errorMessage, "member is blocked")
        assert.strictEqual(letter.attempts, 1)
        assert.isDefined(letter.errorStack)
        assert.isTrue(letter.firstAttemptAt.epochMillis <= letter.lastAttemptAt.epochMillis)
        assert.strictEqual(key?.toString(), "k")
        assert.strictEqual(JSON.parse(value!.toString()).eventId, events[1]!.eventId)
        // The original headers stay, and the original record's timestamp is kept.
        assert.strictEqual(dead!.headers["traceparent"], traceparent)
        assert.strictEqual(dead!.headers["x-origin"], "test")
        assert.strictEqual(letter.originalTimestamp, sentAt)

        const failed = yield* sql<{ eventId: string; errorTag: string; attempts: number; status: string }>`
        SELECT event_id, error_tag, attempts, status FROM kpipe_failed_events`
        assert.deepStrictEqual(failed, [{
          eventId: events[1]!.eventId,
          errorTag: "Rejected",
          attempts: 1,
          status: "OPEN"
        }])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a failure that outlasts its retries is dead-lettered after exactly 1 + maxRetries attempts",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("exhausted", 1)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("exhausted")
        let attempts = 0
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            handle: () => Effect.suspend(() => Effect.fail(new Transient({ attempt: ++attempts })))
          })
          yield* produce(topic, [event("k", 1)])
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 1))
        }))
        assert.strictEqual(attempts, fastRetry.maxRetries + 1)
        const [dead] = yield* readTopic(topic.deadLetter.name, 1)
        const { letter } = yield* DeadLetter.decode(dead!)
        assert.strictEqual(letter.attempts, fastRetry.maxRetries + 1)
        assert.strictEqual(letter.errorTag, "Transient")
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live("undecodable bytes go to the dead-letter topic at once, untouched", () =>
    Effect.gen(function*() {
      const topic = makeTopic("undecodable", 1)
      yield* createTopics(topic)
      const group = TestKafka.uniqueName("undecodable")
      const producer = yield* Producer.Producer
      yield* producer.send({
        topic: topic.name,
        messages: [{ key: "k", value: "{not json" }, { key: "k", value: JSON.stringify({ type: "Unknown" }) }]
      })
      yield* produce(topic, [event("k", 3)])
      yield* Effect.scoped(Effect.gen(function*() {
        yield* consume(topic, group)
        yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 3))
      }))
      assert.strictEqual(yield* appliedCount(group), 1)
      const dead = yield* readTopic(topic.deadLetter.name, 2)
      const letters = yield* Effect.forEach(dead, DeadLetter.decode)
      assert.deepStrictEqual(letters.map(({ value }) => value?.toString()), [
        "{not json",
        JSON.stringify({ type: "Unknown" })
      ])
      assert.deepStrictEqual(letters.map(({ letter }) => [letter.errorTag, letter.attempts]), [["DecodeError", 1], [
        "DecodeError",
        1
      ]])
    }).pipe(Effect.provide(TestLive)), { timeout: 60_000 })

  it.live(
    "a record whose bytes or headers hold NUL is dead-lettered and recorded, not retried forever",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("nul", 1)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("nul")
        const producer = yield* Producer.Producer
        // A binary payload on a JSON topic: the decode error quotes its raw bytes, NUL included.
        yield* producer.send({ topic: topic.name, messages: [{ key: "k", value: Buffer.from([0, 1, 2]) }] })
        yield* producer.send({
          topic: topic.name,
          messages: [{ key: "k", value: yield* topic.encode(event("k", 1)), headers: { "x-note": "a\u0000b" } }]
        })
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, { handle: () => Effect.fail(new Rejected({ reason: "no" })) })
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 2), "30 seconds")
        }))
        const rows = yield* sql<{ errorTag: string; errorMessage: string; payload: Buffer; note: string | null }>`
        SELECT error_tag, error_message, payload, headers->>'x-note' AS note FROM kpipe_failed_events
        WHERE consumer_group = ${group} ORDER BY "offset"`
        assert.deepStrictEqual(rows.map((row) => [row.errorTag, row.note]), [["DecodeError", null], [
          "Rejected",
          "a\uFFFDb"
        ]])
        assert.include(rows[0]!.errorMessage, "\uFFFD")
        assert.deepStrictEqual([...rows[0]!.payload], [0, 1, 2])
        const letters = yield* Effect.forEach(yield* readTopic(topic.deadLetter.name, 2), DeadLetter.decode)
        assert.deepStrictEqual(letters.map(({ letter }) => letter.errorTag), ["DecodeError", "Rejected"])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "keeps the offset while the dead-letter topic cannot take the record, then commits once it can",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("dlt-down", 1)
        const admin = yield* Admin.Admin
        yield* admin.createTopics([{ name: topic.name, partitions: 1 }])
        const group = TestKafka.uniqueName("dlt-down")
        yield* produce(topic, [event("k", 1)])
        // The real sink, with its attempts counted.
        const sink = yield* DeadLetter.DeadLetterSink
        let attempts = 0
        let failures = 0
        const counting = DeadLetter.DeadLetterSink.of({
          record: sink.record,
          publish: (letter) =>
            Effect.suspend(() => {
              attempts++
              return sink.publish(letter)
            }).pipe(Effect.tapError(() => Effect.sync(() => failures++)))
        })
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, { handle: () => Effect.fail(new Rejected({ reason: "no" })) }).pipe(
            Effect.provideService(DeadLetter.DeadLetterSink, counting)
          )
          // Two failed publishes: the first failed, and the consumer went on trying instead of moving on.
          yield* eventually(Effect.sync(() => failures >= 2), "60 seconds", "two failed dead-letter publishes")
          assert.strictEqual(yield* committedTotal(group, topic.name), 0)
          assert.deepStrictEqual(yield* sql`SELECT id FROM kpipe_failed_events`, [])

          yield* admin.createTopics([{ name: topic.deadLetter.name, partitions: 1 }])
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 1), "60 seconds")
        }))
        assert.strictEqual(attempts, failures + 1)
        assert.strictEqual((yield* sql`SELECT id FROM kpipe_failed_events`).length, 1)
        const [dead] = yield* readTopic(topic.deadLetter.name, 1)
        assert.strictEqual((yield* DeadLetter.decode(dead!)).letter.errorTag, "Rejected")
      }).pipe(Effect.provide(TestLive)),
    { timeout: 150_000 }
  )

  it.live(
    "a replica killed with SIGKILL mid-batch hands its partitions over; every event is applied once",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const admin = yield* Admin.Admin
        const topic = makeTopic("failover", 3)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("failover")
        const events = Array.from({ length: 300 }, (_, i) => event(`member-${i % 30}`, i))
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const url = Database.withDatabase(Redacted.value(yield* Database.url), current!.database)

        const replica = yield* ServiceProcess.start({
          name: "replica",
          entry: fileURLToPath(new URL("fixtures/replica.ts", import.meta.url)),
          args: ["consumer", topic.name, group],
          env: { DATABASE_URL: url, HANDLER_DELAY_MS: "15", BATCH_SIZE: "5", KAFKA_CLIENT_ID: "failover-replica" },
          ready: "ready",
          readyTimeout: "30 seconds"
        })
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            batchSize: 5,
            handle: (e) => Effect.zipRight(Effect.sleep("15 millis"), recordApplied(group)(e))
          })
          yield* eventually(
            Effect.map(admin.describeGroup(group), (g) => g.state === "Stable" && g.memberIds.length === 2)
          )
          const owned = (yield* assignments(group, topic.name)).get("failover-replica") ?? []
          assert.isAbove(owned.length, 0, "the replica owns no partition")
          yield* produce(topic, events)
          // The replica applies some of its events, and is killed while its partitions still have work.
          yield* eventually(Effect.map(appliedBy(group, "replica"), (n) => n >= 20))
          yield* replica.kill
          const byReplica = yield* appliedBy(group, "replica")
          const pending = (yield* unconsumed(group, topic.name)).filter((p) => owned.includes(p))
          assert.isAbove(pending.length, 0, "the replica's partitions were done when it was killed")
          assert.isBelow(yield* appliedCount(group), events.length, "everything was applied before the kill")

          yield* eventually(Effect.map(appliedCount(group), (n) => n === events.length), "60 seconds")
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === events.length), "30 seconds")
          // Nothing the replica committed was applied again by the survivor, and it applied nothing after its death.
          assert.strictEqual(yield* appliedBy(group, "replica"), byReplica)
        }))
        assert.strictEqual(yield* appliedCount(group), events.length)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 120_000 }
  )
})

describe("IdempotentConsumer metrics", () => {
  it.live("counts applied, duplicate, retried and dead-lettered records", () =>
    Effect.gen(function*() {
      const topic = makeTopic("consumer-metrics", 1)
      yield* createTopics(topic)
      const group = TestKafka.uniqueName("consumer-metrics")
      const [applied, flaky, rejected] = [event("k", 1), event("k", 2), event("k", 3)]
      yield* produce(topic, [applied, flaky, rejected, applied])
      let flakyAttempts = 0
      yield* Effect.scoped(Effect.gen(function*() {
        yield* consume(topic, group, {
          handle: (e) =>
            e.seq === 2 && ++flakyAttempts < 3
              ? Effect.fail(new Transient({ attempt: flakyAttempts }))
              : e.seq === 3
              ? Effect.fail(new Rejected({ reason: "no" }))
              : recordApplied(group)(e)
        }).pipe(Effect.tagMetrics("kpipe_test", group))
        yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 4))
      }))
      assert.strictEqual(flakyAttempts, 3)
      assert.deepStrictEqual(
        yield* Effect.all([
          counted(IdempotentConsumer.appliedTotal, group),
          counted(IdempotentConsumer.duplicatesTotal, group),
          counted(IdempotentConsumer.retriesTotal, group),
          counted(IdempotentConsumer.deadLetteredTotal, group)
        ]),
        [2, 1, 2, 1]
      )
    }).pipe(Effect.provide(TestLive)), { timeout: 60_000 })
})

/**
 * `handleBatch` on a new topic of `partitions`, fed `events`, until `committed` offsets are
 * committed: each call's events are kept, and a call fails with what `fail` says about its events.
 */
const runBatchHandler = (
  name: string,
  options: {
    readonly partitions: number
    readonly events: ReadonlyArray<TestEvent>
    readonly committed: number
    readonly fail: (delivered: ReadonlyArray<IdempotentConsumer.Delivered<TestEvent>>) => Rejected | Blamed | undefined
    readonly partitionsConsumedConcurrently?: number
  }
) =>
  Effect.gen(function*() {
    const topic = makeTopic(name, options.partitions)
    yield* createTopics(topic)
    const group = TestKafka.uniqueName(name)
    const calls: Array<ReadonlyArray<IdempotentConsumer.Delivered<TestEvent>>> = []
    yield* produce(topic, options.events)
    yield* Effect.scoped(Effect.gen(function*() {
      yield* IdempotentConsumer.run({
        topic,
        groupId: group,
        handleBatch: (delivered) =>
          Effect.suspend((): Effect.Effect<void, Rejected | Blamed | SqlError, SqlClient> => {
            calls.push(delivered)
            const failure = options.fail(delivered)
            return failure === undefined ? recordAppliedAll(group)(delivered) : Effect.fail(failure)
          }),
        errors: { SqlError: "retry", Rejected: "deadLetter", Blamed: "retry" },
        retry: fastRetry,
        batchSize: 100,
        kafka: { ...consumerTimings, partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 1 }
      })
      yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === options.committed))
    }))
    return { group, calls }
  })

const seqsOf = (delivered: ReadonlyArray<IdempotentConsumer.Delivered<TestEvent>>) =>
  delivered.map(({ event }) => event.seq)

describe("IdempotentConsumer.handleBatch", () => {
  it.live(
    "applies all new events of a transaction in one call; a failing batch is retried event by event to isolate the bad one",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const events = Array.from({ length: 12 }, (_, i) => event(`k${i % 3}`, i))
        const { calls, group } = yield* runBatchHandler("batch-handler", {
          partitions: 1,
          events: [...events, events[0]!],
          committed: events.length + 1,
          fail: (delivered) =>
            delivered.some(({ event }) => event.seq === 5) ? new Rejected({ reason: "seq 5 is poison" }) : undefined
        })
        const seqs = events.map((e) => e.seq)
        // One call with every new event of the fetch (the repeated record is not among them), then
        // one call per event to isolate the poison; the duplicate reaches no call at all.
        assert.deepStrictEqual(calls.map(seqsOf), [seqs, ...seqs.map((seq) => [seq])])
        const applied = yield* sql<{ seq: number }>`SELECT seq FROM applied WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(applied.map((row) => row.seq), [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11])
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        const failed = yield* sql<
          { eventId: string }
        >`SELECT event_id FROM kpipe_failed_events WHERE consumer_group = ${group}`
        assert.deepStrictEqual(failed.map((row) => row.eventId), [events[5]!.eventId])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "an error naming its event: that event is retried alone, the batch's call counted as its first attempt; the others each on their own, once more",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const events = Array.from({ length: 12 }, (_, i) => event(`k${i % 3}`, i))
        const poison = new Set([5, 8])
        const { calls, group } = yield* runBatchHandler("batch-blame", {
          partitions: 1,
          events,
          committed: events.length,
          fail: (delivered) => {
            const first = delivered.find(({ event }) => poison.has(event.seq))
            return first === undefined ? undefined : new Blamed({ eventId: first.event.eventId })
          }
        })
        const seqs = events.map((e) => e.seq)
        // The whole batch; then each other event on its own, so the second poison is not tried again
        // for each event blamed before it: 5 blamed (1 + 3 attempts), 8 on its own (1 + 1 + 3).
        const alone = (seq: number) => poison.has(seq) ? [[seq], [seq], [seq], ...(seq === 8 ? [[seq]] : [])] : [[seq]]
        assert.deepStrictEqual(calls.map(seqsOf), [seqs, ...seqs.flatMap(alone)])
        const applied = yield* sql<{ seq: number }>`SELECT seq FROM applied WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(applied.map((row) => row.seq), seqs.filter((seq) => !poison.has(seq)))
        const failed = yield* sql<{ eventId: string; attempts: number }>`
          SELECT event_id, attempts FROM kpipe_failed_events WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(failed, [
          { eventId: events[5]!.eventId, attempts: 4 },
          { eventId: events[8]!.eventId, attempts: 4 }
        ])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})

describe("IdempotentConsumer with several partitions at once", () => {
  it.live(
    "the batches of one fetch share a transaction and an offset commit; each key keeps its order, a poison event is dead-lettered alone",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const events = Array.from({ length: 60 }, (_, i) => event(`k${i % 12}`, i))
        const { calls, group } = yield* runBatchHandler("fetch-group", {
          partitions: 3,
          events,
          committed: events.length,
          fail: (delivered) =>
            delivered.some(({ event }) => event.seq === 17) ? new Rejected({ reason: "seq 17 is poison" }) : undefined,
          partitionsConsumedConcurrently: 3
        })
        // The three partitions' batches of the first fetch in one call (one per partition before).
        assert.strictEqual(new Set(calls[0]!.map(({ record }) => record.partition)).size, 3)
        const applied = yield* sql<{ seq: number; messageKey: string }>`
          SELECT seq, message_key FROM applied WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(
          applied.map((row) => row.seq).sort((a, b) => a - b),
          events.map((e) => e.seq).filter((seq) => seq !== 17)
        )
        for (let k = 0; k < 12; k++) {
          const seqs = applied.filter((row) => row.messageKey === `k${k}`).map((row) => row.seq)
          assert.deepStrictEqual(seqs, [...seqs].sort((a, b) => a - b), `key k${k} in order`)
        }
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        const failed = yield* sql<{ eventId: string }>`
          SELECT event_id FROM kpipe_failed_events WHERE consumer_group = ${group}`
        assert.deepStrictEqual(failed.map((row) => row.eventId), [events[17]!.eventId])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})

describe("IdempotentConsumer lifecycle", () => {
  it.live(
    "on shutdown it finishes or rolls back the record in hand and commits exactly what it applied",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("drain", 1)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("drain")
        yield* produce(topic, Array.from({ length: 30 }, (_, i) => event("k", i)))
        const slow = (e: TestEvent) => Effect.zipRight(Effect.sleep("100 millis"), recordApplied(group)(e))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, { batchSize: 1, handle: slow })
          yield* eventually(Effect.map(appliedCount(group), (n) => n >= 5))
        }))
        const applied = yield* appliedCount(group)
        assert.isBelow(applied, 30)
        assert.strictEqual(yield* committedTotal(group, topic.name), applied)

        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, { batchSize: 1, handle: slow })
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 30))
        }))
        assert.strictEqual(yield* appliedCount(group), 30)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "stopped right after a COMMIT, it still commits the offset of what that COMMIT applied",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("stop-after-commit", 1)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("stop-after-commit")
        yield* produce(topic, Array.from({ length: 5 }, (_, i) => event("k", i)))
        const committed = yield* Deferred.make<void>()
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            batchSize: 1,
            // The stop arrives while the first run is between its COMMIT and the end of the hook.
            afterCommit: () => Effect.zipRight(Deferred.succeed(committed, void 0), Effect.sleep("1 second"))
          })
          yield* Deferred.await(committed)
        }))
        const applied = yield* appliedCount(group)
        assert.isAtLeast(applied, 1)
        assert.strictEqual(yield* committedTotal(group, topic.name), applied)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "stopped while its COMMIT is in flight, it runs afterCommit and commits the offset of what that COMMIT applied",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("stop-during-commit", 1)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("stop-during-commit")
        // A deferred constraint trigger runs at COMMIT: each COMMIT of a row here takes a second.
        const slow = sql(group.replaceAll("-", "_"))
        yield* sql`CREATE OR REPLACE FUNCTION kpipe_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS
          'BEGIN PERFORM pg_sleep(1); RETURN NULL; END'`
        yield* sql`CREATE TABLE ${slow} (event_id text PRIMARY KEY)`
        yield* sql`CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON ${slow}
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kpipe_test_slow_commit()`
        yield* produce(topic, [event("k", 0)])
        const handled = yield* Deferred.make<void>()
        const afterCommit: Array<string> = []
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            batchSize: 1,
            handle: (e) =>
              recordApplied(group)(e).pipe(
                Effect.zipRight(sql`INSERT INTO ${slow} ${sql.insert({ eventId: e.eventId })}`),
                Effect.zipRight(Deferred.succeed(handled, void 0))
              ),
            afterCommit: (events) => Effect.sync(() => afterCommit.push(...events.map((e) => e.eventId)))
          })
          yield* Deferred.await(handled)
          yield* Effect.sleep("300 millis")
        }))
        yield* sql`DROP TABLE ${slow}`
        assert.strictEqual(yield* appliedCount(group), 1)
        assert.lengthOf(afterCommit, 1)
        assert.strictEqual(yield* committedTotal(group, topic.name), 1)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live("a handler slower than the session timeout keeps its group membership", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const topic = makeTopic("slow-handler", 1)
      yield* createTopics(topic)
      const group = TestKafka.uniqueName("slow-handler")
      const started = yield* Deferred.make<number>()
      const sessionTimeout = consumerTimings.sessionTimeout ?? 30_000
      yield* Effect.scoped(Effect.gen(function*() {
        yield* consume(topic, group, {
          handle: (e) =>
            Clock.currentTimeMillis.pipe(
              Effect.flatMap((now) => Deferred.succeed(started, now)),
              Effect.zipRight(Effect.sleep(Duration.millis(sessionTimeout + 3_000))),
              Effect.zipRight(recordApplied(group)(e))
            )
        })
        const before = yield* admin.describeGroup(group)
        assert.strictEqual(before.memberIds.length, 1)
        yield* produce(topic, [event("k", 1)])
        // While the handler runs past the session timeout, the member is never evicted.
        const since = yield* Deferred.await(started)
        const samples = yield* admin.describeGroup(group).pipe(
          Effect.zip(Clock.currentTimeMillis),
          Effect.tap(([during]) =>
            Effect.sync(() => assert.deepStrictEqual([during.state, during.memberIds], ["Stable", before.memberIds]))
          ),
          Effect.repeat({
            schedule: Schedule.spaced("500 millis"),
            until: ([, now]) => now - since > sessionTimeout + 1_000
          }),
          Effect.as(true)
        )
        assert.isTrue(samples)
        assert.strictEqual(yield* appliedCount(group), 0, "the handler finished before the session timeout passed")
        yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 1))
        const after = yield* admin.describeGroup(group)
        assert.deepStrictEqual(after.memberIds, before.memberIds)
      }))
      assert.strictEqual(yield* appliedCount(group), 1)
    }).pipe(Effect.provide(TestLive)), { timeout: 60_000 })
})
