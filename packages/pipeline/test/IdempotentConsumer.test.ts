import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
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
  Producer,
  readTopic,
  recordApplied,
  type TestEvent
} from "./utils.ts"

class Transient extends Data.TaggedError("Transient")<{ readonly attempt: number }> {}
class Rejected extends Data.TaggedError("Rejected")<{ readonly reason: string }> {}

const consumerTimings = { ...TestKafka.fastConsumer }

const committedTotal = (group: string, topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic)).pipe(
    Effect.map((offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0))
  )

const consume = (
  topic: ReturnType<typeof makeTopic>,
  group: string,
  options: {
    readonly batchSize?: number
    readonly handle?: (e: TestEvent) => Effect.Effect<void, Transient | Rejected | SqlError, SqlClient>
  } = {}
) =>
  IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Transient | Rejected | SqlError, SqlClient>({
    topic,
    groupId: group,
    handle: options.handle ?? recordApplied(group),
    errors: { SqlError: "retry", Transient: "retry", Rejected: "deadLetter" },
    retry: fastRetry,
    batchSize: options.batchSize,
    kafka: consumerTimings
  })

describe("IdempotentConsumer", () => {
  it.live.prop(
    "applies each distinct event exactly once per group, whatever the duplicates and redeliveries",
    {
      deliveries: FastCheck.array(FastCheck.nat({ max: 11 }), { minLength: 1, maxLength: 40 }),
      batchSize: FastCheck.constantFrom(1, 7, 100),
      redeliver: FastCheck.boolean()
    },
    ({ batchSize, deliveries, redeliver }) =>
      Effect.gen(function*() {
        const topic = makeTopic("exactly-once")
        yield* createTopics(topic)
        const pool = Array.from({ length: 12 }, (_, i) => event(`key-${i % 5}`, i))
        yield* produce(topic, deliveries.map((i) => pool[i]!))
        const distinct = new Set(deliveries).size
        const groups = [TestKafka.uniqueName("g-a"), TestKafka.uniqueName("g-b")]

        const consumeAll = Effect.scoped(Effect.gen(function*() {
          for (const group of groups) yield* consume(topic, group, { batchSize })
          yield* eventually(Effect.map(
            Effect.all(groups.map((group) => committedTotal(group, topic.name))),
            (totals) => totals.every((total) => total === deliveries.length)
          ))
        }))
        yield* consumeAll
        if (redeliver) {
          const admin = yield* Admin.Admin
          for (const group of groups) yield* admin.resetOffsets(group, topic.name)
          yield* consumeAll
        }
        for (const group of groups) {
          assert.strictEqual(yield* appliedCount(group), distinct)
          assert.deepStrictEqual(yield* appliedTwice(group), [])
        }
      }).pipe(Effect.provide(PipelineLive)),
    { timeout: 120_000, fastCheck: { numRuns: 4 } }
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
      }).pipe(Effect.provide(PipelineLive)),
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
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            batchSize: 10,
            handle: (e) =>
              e.seq === 2 ? Effect.fail(new Rejected({ reason: "member is blocked" })) : recordApplied(group)(e)
          })
          yield* produce(topic, events).pipe(Effect.withSpan("test.produce"))
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

        const failed = yield* sql<{ eventId: string; errorTag: string; attempts: number; status: string }>`
        SELECT event_id, error_tag, attempts, status FROM kpipe_failed_events`
        assert.deepStrictEqual(failed, [{
          eventId: events[1]!.eventId,
          errorTag: "Rejected",
          attempts: 1,
          status: "OPEN"
        }])
      }).pipe(Effect.provide(PipelineLive)),
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
      }).pipe(Effect.provide(PipelineLive)),
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
    }).pipe(Effect.provide(PipelineLive)), { timeout: 60_000 })

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
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, { handle: () => Effect.fail(new Rejected({ reason: "no" })) })
          yield* Effect.sleep("4 seconds")
          assert.strictEqual(yield* committedTotal(group, topic.name), 0)
          assert.deepStrictEqual(yield* sql`SELECT id FROM kpipe_failed_events`, [])

          yield* admin.createTopics([{ name: topic.deadLetter.name, partitions: 1 }])
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 1), "60 seconds")
        }))
        assert.strictEqual((yield* sql`SELECT id FROM kpipe_failed_events`).length, 1)
      }).pipe(Effect.provide(PipelineLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a replica killed with SIGKILL mid-batch hands its partitions over; every event is applied once",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
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
          env: { DATABASE_URL: url, HANDLER_DELAY_MS: "15", BATCH_SIZE: "5" },
          ready: "ready",
          readyTimeout: "30 seconds"
        })
        yield* Effect.scoped(Effect.gen(function*() {
          yield* consume(topic, group, {
            batchSize: 5,
            handle: (e) => Effect.zipRight(Effect.sleep("15 millis"), recordApplied(group)(e))
          })
          yield* produce(topic, events)
          yield* eventually(Effect.map(appliedCount(group), (n) => n >= 60))
          yield* replica.kill
          yield* eventually(Effect.map(appliedCount(group), (n) => n === events.length), "60 seconds")
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === events.length), "30 seconds")
        }))
        assert.strictEqual(yield* appliedCount(group), events.length)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
      }).pipe(Effect.scoped, Effect.provide(PipelineLive)),
    { timeout: 120_000 }
  )
})

describe("IdempotentConsumer.handleBatch", () => {
  it.live(
    "applies all new events of a transaction in one call; a failing batch is retried event by event to isolate the bad one",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("batch-handler", 1)
        yield* createTopics(topic)
        const events = Array.from({ length: 12 }, (_, i) => event(`k${i % 3}`, i))
        const group = TestKafka.uniqueName("batch-handler")
        const calls: Array<number> = []
        yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: group,
            handleBatch: (delivered) =>
              Effect.gen(function*() {
                calls.push(delivered.length)
                if (delivered.some(({ event }) => event.seq === 5)) {
                  return yield* new Rejected({ reason: "seq 5 is poison" })
                }
                yield* sql`INSERT INTO applied ${
                  sql.insert(delivered.map(({ event }) => ({
                    consumerGroup: group,
                    eventId: event.eventId,
                    messageKey: event.key,
                    seq: event.seq
                  })))
                }`
              }),
            errors: { SqlError: "retry", Rejected: "deadLetter" },
            retry: fastRetry,
            batchSize: 100,
            kafka: consumerTimings
          })
          yield* produce(topic, [...events, events[0]!])
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === events.length + 1))
        }))
        const applied = yield* sql<{ seq: number }>`SELECT seq FROM applied WHERE consumer_group = ${group} ORDER BY id`
        assert.deepStrictEqual(applied.map((row) => row.seq).sort((a, b) => a - b), [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11])
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        assert.isAbove(Math.max(...calls), 1)
        const failed = yield* sql<{ eventId: string }>`SELECT event_id FROM kpipe_failed_events`
        assert.deepStrictEqual(failed.map((row) => row.eventId), [events[5]!.eventId])
      }).pipe(Effect.provide(PipelineLive)),
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
      }).pipe(Effect.provide(PipelineLive)),
    { timeout: 60_000 }
  )

  it.live("a handler slower than the session timeout keeps its group membership", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const topic = makeTopic("slow-handler", 1)
      yield* createTopics(topic)
      const group = TestKafka.uniqueName("slow-handler")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* consume(topic, group, {
          handle: (e) => Effect.zipRight(Effect.sleep("9 seconds"), recordApplied(group)(e))
        })
        const before = yield* admin.describeGroup(group)
        yield* produce(topic, [event("k", 1)])
        yield* Effect.sleep("8 seconds")
        const during = yield* admin.describeGroup(group)
        yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 1))
        const after = yield* admin.describeGroup(group)
        assert.strictEqual(before.memberIds.length, 1)
        assert.deepStrictEqual([during.state, during.memberIds], ["Stable", before.memberIds])
        assert.deepStrictEqual(after.memberIds, before.memberIds)
      }))
      assert.strictEqual(yield* appliedCount(group), 1)
    }).pipe(Effect.provide(PipelineLive)), { timeout: 60_000 })
})
