import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { KafkaError } from "@kpipe/kafka/KafkaError"
import { IdempotentConsumer, Outbox, OutboxRelay, Publisher } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
import {
  appliedCount,
  appliedTwice,
  createTopics,
  decodeValue,
  event,
  eventually,
  KafkaClient,
  makeTopic,
  PipelineLive,
  Producer,
  readTopic,
  recordApplied
} from "./utils.ts"

const replicaScript = fileURLToPath(new URL("fixtures/replica.ts", import.meta.url))

const statuses = Effect.flatMap(
  SqlClient,
  (sql) =>
    sql<
      { status: string; n: number }
    >`SELECT status, count(*)::int AS n FROM kpipe_outbox GROUP BY status ORDER BY status`
)

const drain = OutboxRelay.drain()

describe("Outbox", () => {
  it.live("a rolled-back transaction leaves no row, a committed one exactly its events", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-tx")
      const kept = event("member-1", 1)
      const error = yield* sql.withTransaction(
        Effect.zipRight(Outbox.append(topic, event("member-1", 0)), Effect.fail("business rule broken" as const))
      ).pipe(Effect.flip)
      assert.strictEqual(error, "business rule broken")
      assert.deepStrictEqual(yield* statuses, [])

      yield* sql.withTransaction(Outbox.append(topic, kept))
      const rows = yield* sql<{ eventId: string; topic: string; messageKey: string; seq: string; eventType: string }>`
        SELECT event_id, topic, message_key, seq, event_type FROM kpipe_outbox`
      assert.deepStrictEqual(rows, [{
        eventId: kept.eventId,
        topic: topic.name,
        messageKey: "member-1",
        seq: "1",
        eventType: "TestEvent"
      }])
    }).pipe(Effect.provide(PipelineLive)))

  it.live("the relay publishes exactly the appended events, keyed, in order, with their trace context", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-publish")
      yield* createTopics(topic)
      const appended = Array.from(
        { length: 5 },
        (_, tx) => Array.from({ length: 10 }, (_, i) => event(`k${i % 4}`, tx * 10 + i))
      )
      for (const events of appended) {
        yield* sql.withTransaction(Outbox.append(topic, ...events)).pipe(Effect.withSpan("test.append"))
      }
      assert.strictEqual(yield* drain, 50)
      assert.deepStrictEqual(yield* statuses, [{ status: "PUBLISHED", n: 50 }])

      const records = yield* readTopic(topic.name, 50)
      assert.strictEqual(records.length, 50)
      const published = records.map(decodeValue)
      assert.deepStrictEqual(new Set(published.map((e) => e.eventId)), new Set(appended.flat().map((e) => e.eventId)))
      for (const key of ["k0", "k1", "k2", "k3"]) {
        const seqs = published.filter((e) => e.key === key).map((e) => e.seq)
        assert.deepStrictEqual(seqs, [...seqs].sort((a, b) => a - b))
      }
      for (const record of records) {
        assert.strictEqual(record.key?.toString(), decodeValue(record).key)
        assert.strictEqual(record.headers["kpipe-event-type"], "TestEvent")
        assert.strictEqual(record.headers["kpipe-event-version"], "1")
        assert.strictEqual(record.headers["kpipe-event-id"], decodeValue(record).eventId)
        assert.match(record.headers["traceparent"] ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      }
    }).pipe(Effect.provide(PipelineLive)))

  it.live(
    "two relays publish each key in commit order while transactions interleave and commit late",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("outbox-order")
        yield* createTopics(topic)
        const keys = ["a", "b", "c", "d"]
        yield* sql`INSERT INTO commit_witness ${sql.insert(keys.map((key) => ({ messageKey: key, n: 0 })))}`

        // Each transaction appends, then takes the key's next witness number, then lingers before it
        // commits; the witness number is the key's commit order, known to the test independently of the relay.
        const witnessed = new Map<string, number>()
        const transaction = (i: number) =>
          Effect.gen(function*() {
            const key = keys[yield* Random.nextIntBetween(0, keys.length)]!
            yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(0, 15)))
            const events = Array.from({ length: 1 + (i % 2) }, (_, j) => event(key, i * 10 + j))
            const [n] = yield* sql.withTransaction(Effect.gen(function*() {
              yield* Outbox.append(topic, ...events)
              const [row] = yield* sql<{ n: number }>`
              UPDATE commit_witness SET n = n + 1 WHERE message_key = ${key} RETURNING n`
              yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(0, 25)))
              return [row!.n]
            }))
            events.forEach((e, j) => witnessed.set(e.eventId, n! * 10 + j))
            return events.length
          })

        const relay = Layer.scopedDiscard(OutboxRelay.run({ batchSize: 7, pollInterval: "50 millis" })).pipe(
          Layer.provide(Producer.layer()),
          Layer.provide(KafkaClient.layerFromEnv)
        )
        const appended = yield* Effect.scoped(Effect.gen(function*() {
          yield* Layer.build(relay)
          yield* Layer.build(relay)
          const counts = yield* Effect.forEach(Array.from({ length: 120 }, (_, i) => i), transaction, {
            concurrency: 12
          })
          while ((yield* OutboxRelay.stats).pending > 0) yield* Effect.sleep("50 millis")
          return counts.reduce((a, b) => a + b, 0)
        }))

        const records = yield* readTopic(topic.name, appended)
        const seen = new Set<string>()
        const order = new Map<string, Array<number>>()
        for (const e of records.map(decodeValue)) {
          if (seen.has(e.eventId)) continue
          seen.add(e.eventId)
          order.set(e.key, [...(order.get(e.key) ?? []), witnessed.get(e.eventId)!])
        }
        assert.strictEqual(seen.size, appended)
        for (const [key, witnesses] of order) {
          assert.deepStrictEqual(witnesses, [...witnesses].sort((a, b) => a - b), `key ${key} out of commit order`)
        }
      }).pipe(Effect.provide(PipelineLive)),
    { timeout: 60_000 }
  )

  it.live("a row the broker never accepts is marked FAILED, holds back only its key, and can be retried or skipped", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-poison")
      yield* createTopics(topic)
      const tooLarge = event("poisoned", 2, "x".repeat(2 * 1024 * 1024))
      yield* Outbox.append(topic, event("poisoned", 1), tooLarge, event("poisoned", 3), event("healthy", 1))

      assert.strictEqual(yield* drain, 2)
      const rows = yield* sql<
        { id: string; messageKey: string; seq: string; status: string; lastError: string | null }
      >`
        SELECT id, message_key, seq, status, last_error FROM kpipe_outbox ORDER BY message_key, seq`
      assert.deepStrictEqual(rows.map((r) => [r.messageKey, r.seq, r.status]), [
        ["healthy", "1", "PUBLISHED"],
        ["poisoned", "1", "PUBLISHED"],
        ["poisoned", "2", "FAILED"],
        ["poisoned", "3", "PENDING"]
      ])
      assert.isNotNull(rows[2]!.lastError)
      const stats = yield* OutboxRelay.stats
      assert.strictEqual(stats.failed, 1)
      assert.strictEqual(stats.pending, 1)
      assert.isTrue(Option.isSome(stats.oldestPendingAge))

      assert.isTrue(yield* OutboxRelay.retryFailed(rows[2]!.id))
      assert.strictEqual(yield* drain, 0)
      assert.strictEqual((yield* OutboxRelay.stats).failed, 1)

      assert.isTrue(yield* OutboxRelay.skipFailed(rows[2]!.id))
      assert.strictEqual(yield* drain, 1)
      const records = yield* readTopic(topic.name, 3)
      assert.deepStrictEqual(records.map((r) => decodeValue(r).seq).sort(), [1, 1, 3])
    }).pipe(Effect.provide(PipelineLive)))

  it.live("a running relay wakes on commit instead of waiting for its poll", () =>
    Effect.gen(function*() {
      const topic = makeTopic("outbox-notify")
      yield* createTopics(topic)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* OutboxRelay.run({ pollInterval: "1 hour" })
        yield* Effect.sleep("300 millis")
        yield* Outbox.append(topic, event("k", 1))
        const records = yield* readTopic(topic.name, 1).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(records.length, 1)
      }))
    }).pipe(Effect.provide(PipelineLive)))

  it.live("a relay whose claims are blocked backs off and publishes once the broker takes them again", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-blocked")
      yield* createTopics(topic)
      const producer = yield* Producer.Producer
      let refusals = 3
      const flaky = Producer.Producer.of({
        send: producer.send,
        sendBatch: (records) =>
          Effect.suspend(() =>
            refusals-- > 0
              ? Effect.fail(new KafkaError({ reason: "Send", retriable: true, cause: "broker away (test)" }))
              : producer.sendBatch(records)
          )
      })
      yield* Effect.scoped(Effect.gen(function*() {
        // Polling never comes to the rescue: only the backoff retries the blocked claim.
        yield* OutboxRelay.run({ pollInterval: "1 hour" }).pipe(Effect.provideService(Producer.Producer, flaky))
        yield* Outbox.append(topic, event("k", 1))
        const records = yield* readTopic(topic.name, 1).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(records.length, 1)
        yield* eventually(Effect.map(statuses, (rows) => rows.length === 1 && rows[0]!.status === "PUBLISHED"))
      }))
      const [row] = yield* sql<
        { attempts: number; lastError: string | null }
      >`SELECT attempts, last_error FROM kpipe_outbox`
      assert.deepStrictEqual(row, { attempts: 4, lastError: null })
    }).pipe(Effect.provide(PipelineLive)))

  it.live("cleanup deletes published rows past retention in bounded chunks and keeps the rest", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-cleanup")
      yield* createTopics(topic)
      yield* Outbox.append(topic, ...Array.from({ length: 20 }, (_, i) => event(`k${i}`, i)))
      yield* drain
      yield* sql`UPDATE kpipe_outbox SET published_at = now() - interval '2 days' WHERE message_key IN ('k0', 'k1', 'k2', 'k3', 'k4')`
      yield* Outbox.append(topic, event("pending", 1))
      assert.strictEqual(yield* OutboxRelay.cleanup("1 day"), 5)
      assert.deepStrictEqual(yield* statuses, [{ status: "PENDING", n: 1 }, { status: "PUBLISHED", n: 15 }])
    }).pipe(Effect.provide(PipelineLive)))

  it.live(
    "a relay killed between publishing and marking is replaced; the events are republished and applied once",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("outbox-crash")
        yield* createTopics(topic)
        const events = Array.from({ length: 20 }, (_, i) => event(`k${i % 3}`, i))
        yield* Outbox.append(topic, ...events)

        // Holding the rows' locks lets the replica send but blocks its "mark published" statement.
        const release = yield* Deferred.make<void>()
        const locked = yield* Deferred.make<void>()
        const holder = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`SELECT id FROM kpipe_outbox FOR UPDATE`
          yield* Deferred.succeed(locked, void 0)
          yield* Deferred.await(release)
        })).pipe(Effect.fork)
        yield* Deferred.await(locked)

        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const replica = yield* ServiceProcess.spawn({
          name: "replica",
          entry: replicaScript,
          args: ["relay", topic.name],
          env: { DATABASE_URL: Database.withDatabase(Redacted.value(yield* Database.url), current!.database) }
        })
        const sent = yield* readTopic(topic.name, events.length)
        assert.strictEqual(sent.length, events.length)
        yield* replica.kill
        yield* Deferred.succeed(release, void 0)
        yield* Fiber.join(holder)

        yield* eventually(Effect.map(
          sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`,
          (rows) => rows[0]!.n === 0
        ))
        assert.strictEqual((yield* OutboxRelay.stats).pending, events.length)
        assert.strictEqual(yield* drain, events.length)

        const group = TestKafka.uniqueName("after-crash")
        yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: group,
            handle: recordApplied(group),
            errors: { SqlError: "retry" },
            kafka: TestKafka.fastConsumer
          })
          yield* eventually(Effect.map(
            Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic.name)),
            (offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0) === 2 * events.length
          ))
        }))
        assert.strictEqual(yield* appliedCount(group), events.length)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
      }).pipe(Effect.scoped, Effect.provide(PipelineLive)),
    { timeout: 90_000 }
  )

  it.live("Publisher sends typed events straight to Kafka with the topic's key and headers", () =>
    Effect.gen(function*() {
      const topic = makeTopic("publisher")
      yield* createTopics(topic)
      const events = [event("a", 1), event("b", 2)]
      yield* Publisher.publish(topic, ...events)
      const records = yield* readTopic(topic.name, 2)
      assert.deepStrictEqual(
        records.map((r) => [r.key?.toString(), decodeValue(r).eventId, r.headers["kpipe-event-id"]]).sort(),
        events.map((e) => [e.key, e.eventId, e.eventId]).sort()
      )
      // @ts-expect-error a value that is not one of the topic's events does not compile
      yield* Publisher.publish(topic, { type: "Other", version: 1, eventId: "x" }).pipe(Effect.ignore)
    }).pipe(Effect.provide(PipelineLive)))
})
