import { SqlClient } from "@effect/sql/SqlClient"
import type * as Statement from "@effect/sql/Statement"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { KafkaError } from "@kpipe/kafka/KafkaError"
import { IdempotentConsumer, Outbox, OutboxRelay, Publisher } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Tracer from "effect/Tracer"
import { fileURLToPath } from "node:url"
import { holdBehindFailed, pendingRows, pendingShards } from "../src/internal/relayClaim.ts"
import {
  appliedCount,
  appliedTwice,
  counted,
  createTopics,
  decodeValue,
  event,
  eventually,
  gauged,
  KafkaClient,
  listeningSessions,
  makeTopic,
  Producer,
  readTopic,
  recordApplied,
  type TestEvent,
  TestLive
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

/**
 * Each key's records, in partition order, only ever repeat earlier ones, never skip ahead (Kafka may
 * hold 1 2 3 1 2 3 4, never 1 3 2), and every expected event is there. `expected`: each key's event
 * ids in commit order.
 */
const assertKeyOrder = (records: ReadonlyArray<TestEvent>, expected: ReadonlyMap<string, ReadonlyArray<string>>) => {
  for (const [key, ids] of expected) {
    const position = new Map(ids.map((id, i) => [id, i]))
    let next = 0
    for (const e of records.filter((e) => e.key === key)) {
      const at = position.get(e.eventId)
      assert.isDefined(at, `key ${key}: ${e.eventId} was never appended`)
      assert.isAtMost(at!, next, `key ${key}: event #${at} published before #${next}`)
      next = Math.max(next, at! + 1)
    }
    assert.strictEqual(next, ids.length, `key ${key}: ${ids.length - next} events never published`)
  }
}

/**
 * A tracer that delegates to the current one and records the names of the spans that ended (a
 * relay's claim of notified shards also as "… notified").
 */
const recordingTracer = (ended: Array<string>) =>
  Effect.map(Effect.tracer, (base) =>
    Tracer.make({
      context: base.context,
      span: (...args) => {
        const span = base.span(...args)
        const end = span.end.bind(span)
        return Object.assign(span, {
          end: (endTime: bigint, exit: Exit.Exit<unknown, unknown>) => {
            ended.push(span.name)
            if (span.attributes.get("kpipe.claim") === "notified") ended.push(`${span.name} notified`)
            end(endTime, exit)
          }
        })
      }
    }))

/** How many relay claims `recordingTracer` saw end. */
const claimsIn = (ended: ReadonlyArray<string>) =>
  Effect.sync(() => ended.filter((name) => name === "OutboxRelay.publishOnce").length)

/** One event on each of 100 keys: far more shards than one claim takes (16). */
const manyKeys = () => Array.from({ length: 100 }, (_, i) => event(`k${i}`, 1))

const databaseUrl = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
  return Database.withDatabase(Redacted.value(yield* Database.url), current!.database)
})

const endOffsetTotal = (topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.endOffsets(topic)).pipe(
    Effect.map((ends) => ends.reduce((sum, { high }) => sum + Number(high), 0))
  )

class RolledBack extends Data.TaggedError("RolledBack")<{ readonly read: number }> {}

interface PlanNode {
  readonly "Relation Name"?: string
  readonly "Actual Rows": number
  readonly "Actual Loops": number
  readonly Plans?: ReadonlyArray<PlanNode>
}

/** Rows the plan's scans of kpipe_outbox returned, over all their loops. */
const outboxRowsRead = (node: PlanNode): number =>
  (node["Relation Name"] === "kpipe_outbox" ? node["Actual Rows"] * node["Actual Loops"] : 0) +
  (node.Plans ?? []).reduce((sum, child) => sum + outboxRowsRead(child), 0)

/**
 * Rows of kpipe_outbox that `statement` reads (EXPLAIN ANALYZE) with statistics taken while the
 * outbox held nothing pending and a backlog of 50,000 rows on 500 keys since; rolled back, so the
 * rows never reach another test's relay.
 */
const rowsReadOnUnseenBacklog = (statement: (sql: SqlClient) => Statement.Statement<unknown>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.withTransaction(Effect.gen(function*() {
      yield* sql`ANALYZE kpipe_outbox`
      yield* sql`
        INSERT INTO kpipe_outbox (topic, message_key, seq, shard, event_id, event_type, schema_version, payload)
        SELECT 'stats-backlog', 'k' || (i % 500), i / 500, (i % 500) % 64, md5(i::text), 'T', 1, '{}'::jsonb
        FROM generate_series(1, 50000) i`
      const [text, params] = statement(sql).compile()
      const [row] = yield* sql.unsafe<Record<string, ReadonlyArray<{ Plan: PlanNode }>>>(
        `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
        params
      )
      const [plan] = Object.values(row!)[0]!
      return yield* Effect.fail(new RolledBack({ read: outboxRowsRead(plan!.Plan) }))
    })).pipe(Effect.catchTag("RolledBack", ({ read }) => Effect.succeed(read))))

/**
 * A topic with `seqs` rows of key "k" appended, the first made impossible to encode (a header that is
 * not a string), and drained once: that row FAILED, the others held behind it.
 */
const keyBehindFailedRow = (name: string, seqs: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const topic = makeTopic(name)
    yield* createTopics(topic)
    yield* Outbox.append(topic, ...Array.from({ length: seqs }, (_, i) => event("k", i + 1)))
    yield* sql`UPDATE kpipe_outbox SET headers = '{"retries": 1}'::jsonb WHERE seq = 1`
    assert.strictEqual(yield* drain, 0)
    return { sql, topic }
  })

describe("Outbox", () => {
  it.live("a claim finds pending shards with one index probe each, however large a backlog the statistics missed", () =>
    Effect.gen(function*() {
      const read = yield* rowsReadOnUnseenBacklog((sql) => pendingShards(sql, 0, 16))
      assert.isAtMost(read, 64, "rows of kpipe_outbox read to find 16 shards")
    }).pipe(Effect.provide(TestLive)))
  it.live("a claim reads about as many rows as it publishes, however large a backlog the statistics missed", () =>
    Effect.gen(function*() {
      const shards = Array.from({ length: 16 }, (_, i) => i)
      const read = yield* rowsReadOnUnseenBacklog((sql) => pendingRows(sql, shards, [], 1000))
      // Each of those shards holds ~780 pending rows here: read whole and sorted, 12,500.
      assert.isAtMost(read, 1100, "rows of kpipe_outbox read to claim 1,000")
    }).pipe(Effect.provide(TestLive)))
  it.live("relay settings of 0 or less are refused, from the environment with a ConfigError naming them", () =>
    Effect.gen(function*() {
      for (
        const [name, value] of [
          ["OUTBOX_BATCH_SIZE", "0"],
          ["OUTBOX_CONCURRENCY", "-1"],
          ["OUTBOX_MAX_BATCH_BYTES", "0"]
        ] as const
      ) {
        const built = yield* Layer.build(OutboxRelay.layerConfig).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([[name, value]]))),
          Effect.scoped,
          Effect.exit
        )
        assert.isTrue(Exit.isFailure(built), `${name}=${value} refused`)
        assert.include(Cause.pretty(Exit.isFailure(built) ? built.cause : Cause.empty), name)
      }
      const run = yield* OutboxRelay.run({ batchSize: 0, shardsPerClaim: 2 }).pipe(Effect.scoped, Effect.exit)
      assert.isTrue(Exit.isFailure(run) && Cause.isDie(run.cause), "run({ batchSize: 0 }) is a defect")
      assert.include(Cause.pretty(Exit.isFailure(run) ? run.cause : Cause.empty), "batchSize = 0")
      const topic = makeTopic("outbox-settings")
      yield* createTopics(topic)
      yield* Outbox.append(topic, event("k", 1), event("k", 2))
      for (const bad of [OutboxRelay.drain({ batchSize: 0 }), OutboxRelay.publishOnce({ shardsPerClaim: 0.5 })]) {
        const exit = yield* Effect.exit(bad as Effect.Effect<unknown, unknown, SqlClient | Producer.Producer>)
        assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), "drain and publishOnce refuse them too")
      }
      assert.deepStrictEqual(yield* statuses, [{ status: "PENDING", n: 2 }])
      assert.strictEqual(yield* OutboxRelay.drain({ maxBatchBytes: Infinity }), 2, "Infinity bytes: no limit")
    }).pipe(Effect.provide(TestLive)))

  it.live("a row whose headers are not strings is FAILED at once with the reason; its key is held, other keys flow", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-bad-headers")
      yield* createTopics(topic)
      const events = [event("bad", 1), event("bad", 2), event("good", 1), event("good", 2)]
      yield* Outbox.append(topic, ...events)
      // As a writer other than Outbox.append could leave it: kafkajs cannot encode a number.
      yield* sql`UPDATE kpipe_outbox SET headers = '{"retries": 1}'::jsonb
                 WHERE message_key = 'bad' AND seq = 1`
      assert.strictEqual(yield* OutboxRelay.drain(), 2)
      const rows = yield* sql<{ messageKey: string; status: string; lastError: string | null }>`
        SELECT message_key, status, last_error FROM kpipe_outbox ORDER BY message_key, seq`
      assert.deepStrictEqual(rows.map((row) => [row.messageKey, row.status]), [
        ["bad", "FAILED"],
        ["bad", "HELD"],
        ["good", "PUBLISHED"],
        ["good", "PUBLISHED"]
      ])
      assert.strictEqual(rows[0]!.lastError, `Outbox row's header "retries" must be a string, not 1`)
      const records = yield* readTopic(topic.name, 2)
      assert.deepStrictEqual(records.map((record) => record.key?.toString()), ["good", "good"])
    }).pipe(Effect.provide(TestLive)))

  it.live("rows behind a FAILED row are held out of the claims, still counted, and released in order by a retry", () =>
    Effect.gen(function*() {
      const { sql, topic } = yield* keyBehindFailedRow("outbox-held", 3)
      // Appended after the row failed: pending until the relay's next hold.
      yield* Outbox.append(topic, event("k", 4))
      const byStatus = sql<{ seq: number; status: string }>`SELECT seq::int, status FROM kpipe_outbox ORDER BY seq`
      const seqsBy = Effect.map(byStatus, (rows) => rows.map((row) => `${row.seq} ${row.status}`))
      assert.deepStrictEqual(yield* seqsBy, ["1 FAILED", "2 HELD", "3 HELD", "4 PENDING"])
      assert.deepStrictEqual(yield* holdBehindFailed, { held: 1, released: 0 })
      assert.deepStrictEqual(yield* seqsBy, ["1 FAILED", "2 HELD", "3 HELD", "4 HELD"])
      assert.strictEqual((yield* OutboxRelay.stats).pending, 3, "held rows are still waiting to be published")
      assert.deepStrictEqual((yield* OutboxRelay.backlogByTopic).map((b) => b.pending), [3])

      yield* sql`UPDATE kpipe_outbox SET headers = '{}'::jsonb WHERE seq = 1`
      const [failed] = yield* sql<{ id: string }>`SELECT id FROM kpipe_outbox WHERE status = 'FAILED'`
      assert.isTrue(yield* OutboxRelay.retryFailed(failed!.id))
      assert.deepStrictEqual(yield* seqsBy, ["1 PENDING", "2 PENDING", "3 PENDING", "4 PENDING"])
      assert.strictEqual(yield* drain, 4)
      const records = yield* readTopic(topic.name, 4)
      assert.deepStrictEqual(records.map((record) => decodeValue(record).seq), [1, 2, 3, 4])
    }).pipe(Effect.provide(TestLive)))

  it.live("held rows whose FAILED row is gone (deleted by hand) are released, and published in order", () =>
    Effect.gen(function*() {
      const { sql, topic } = yield* keyBehindFailedRow("outbox-held-orphaned", 3)
      yield* sql`DELETE FROM kpipe_outbox WHERE status = 'FAILED'`
      assert.deepStrictEqual(yield* holdBehindFailed, { held: 0, released: 2 })
      assert.strictEqual(yield* drain, 2)
      const records = yield* readTopic(topic.name, 2)
      assert.deepStrictEqual(records.map((record) => decodeValue(record).seq), [2, 3])
    }).pipe(Effect.provide(TestLive)))

  it.live("the hold passes over a FAILED row an operator's retry holds, instead of waiting with other keys locked", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-held-retrying")
      yield* createTopics(topic)
      yield* Outbox.append(topic, event("a", 1), event("b", 1))
      yield* sql`UPDATE kpipe_outbox SET headers = '{"retries": 1}'::jsonb`
      assert.strictEqual(yield* drain, 0)
      yield* Outbox.append(topic, event("a", 2), event("b", 2))
      const [b] = yield* sql<{ id: string }>`SELECT id FROM kpipe_outbox WHERE status = 'FAILED' AND message_key = 'b'`
      // A retry of several rows in one transaction, as Redrive's outbox-retry, has locked b's FAILED row.
      const locked = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      const retrying = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`UPDATE kpipe_outbox SET attempts = attempts WHERE id = ${b!.id}`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(done)
      })).pipe(Effect.fork)
      yield* Deferred.await(locked)
      const hold = yield* holdBehindFailed.pipe(Effect.timeout("5 seconds"), Effect.either)
      yield* Deferred.succeed(done, undefined)
      yield* Fiber.join(retrying)
      assert.deepStrictEqual(hold, Either.right({ held: 1, released: 0 }), "a's row held, b's left for next time")
      assert.deepStrictEqual(yield* holdBehindFailed, { held: 1, released: 0 })
    }).pipe(Effect.provide(TestLive)))

  it.live("a key gets one FAILED row when a row the broker refuses is followed by one that cannot be encoded", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-held-two-failures")
      yield* createTopics(topic)
      yield* Outbox.append(topic, event("k", 1, "x".repeat(2 * 1024 * 1024)), event("k", 2))
      yield* sql`UPDATE kpipe_outbox SET headers = '{"retries": 1}'::jsonb WHERE seq = 2`
      // One claim for both rows: the second is marked FAILED before the send, the first by the broker's answer.
      assert.strictEqual(yield* OutboxRelay.drain({ maxBatchBytes: Infinity }), 0)
      const rows = yield* sql<{ seq: number; status: string }>`SELECT seq::int, status FROM kpipe_outbox ORDER BY seq`
      assert.deepStrictEqual(rows.map((row) => `${row.seq} ${row.status}`), ["1 FAILED", "2 HELD"])
    }).pipe(Effect.provide(TestLive)))

  it.live("a skipped FAILED row releases the rows held behind it", () =>
    Effect.gen(function*() {
      const { sql, topic } = yield* keyBehindFailedRow("outbox-held-skip", 2)
      const [failed] = yield* sql<{ id: string }>`SELECT id FROM kpipe_outbox WHERE status = 'FAILED'`
      assert.isTrue(yield* OutboxRelay.skipFailed(failed!.id))
      assert.isFalse(yield* OutboxRelay.skipFailed(failed!.id), "no longer FAILED")
      assert.strictEqual(yield* drain, 1)
      const records = yield* readTopic(topic.name, 1)
      assert.deepStrictEqual(records.map((record) => decodeValue(record).seq), [2])
    }).pipe(Effect.provide(TestLive)))

  it.live("a claim does not read the rows held behind a FAILED row", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const read = yield* sql.withTransaction(Effect.gen(function*() {
        // Shard 0: a FAILED row of key "hot", 5,000 rows of it behind, one row of another key after it.
        yield* sql`
          INSERT INTO kpipe_outbox (topic, message_key, seq, shard, event_id, event_type, schema_version, payload, status)
          SELECT 'held-reads', 'hot', i, 0, md5(i::text), 'T', 1, '{}'::jsonb, CASE WHEN i = 1 THEN 'FAILED' ELSE 'PENDING' END
          FROM generate_series(1, 5001) i`
        yield* sql`
          INSERT INTO kpipe_outbox (topic, message_key, seq, shard, event_id, event_type, schema_version, payload)
          VALUES ('held-reads', 'other', 1, 0, 'other-1', 'T', 1, '{}'::jsonb)`
        assert.deepStrictEqual(yield* holdBehindFailed, { held: 5000, released: 0 })
        const [text, params] = pendingRows(sql, [0], [], 1000).compile()
        const [row] = yield* sql.unsafe<Record<string, ReadonlyArray<{ Plan: PlanNode }>>>(
          `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
          params
        )
        const [plan] = Object.values(row!)[0]!
        return yield* Effect.fail(new RolledBack({ read: outboxRowsRead(plan!.Plan) }))
      })).pipe(Effect.catchTag("RolledBack", ({ read }) => Effect.succeed(read)))
      assert.isAtMost(read, 2, "rows of kpipe_outbox read to claim the one row of the shard that may go")
    }).pipe(Effect.provide(TestLive)))

  it.live("drain fails with the claim's error when it cannot publish, and leaves the rows pending", () =>
    Effect.gen(function*() {
      const topic = makeTopic("outbox-drain-blocked")
      yield* Outbox.append(topic, event("k", 1), event("k", 2))
      const away = new KafkaError({ reason: "Send", retriable: true, cause: new Error("the broker is away") })
      const producer = yield* Producer.Producer
      const failing = Producer.Producer.of({ send: producer.send, sendBatch: () => Effect.fail(away) })
      const drained = yield* OutboxRelay.drain().pipe(Effect.provideService(Producer.Producer, failing), Effect.either)
      const error = Either.getLeft(drained).pipe(Option.getOrUndefined)
      assert.deepStrictEqual(
        [error?._tag, error?.message],
        ["KafkaError", away.message],
        "fails with the claim's error"
      )
      assert.deepStrictEqual(yield* statuses, [{ status: "PENDING", n: 2 }])
    }).pipe(Effect.provide(TestLive)))

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
    }).pipe(Effect.provide(TestLive)))

  it.live("each key's sequence numbers go on in the events' order, across appends, in a transaction or not", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-seq")
      const first = ["b", "a", "b", "c", "a", "b"].map((key, i) => event(key, i))
      const second = ["c", "b", "c"].map((key, i) => event(key, 10 + i))
      yield* sql.withTransaction(Outbox.append(topic, ...first))
      yield* Outbox.append(topic, ...second)
      const rows = yield* sql<{ eventId: string; messageKey: string; seq: string }>`
        SELECT event_id, message_key, seq FROM kpipe_outbox WHERE topic = ${topic.name} ORDER BY id`
      const expected = [["b", 1], ["a", 1], ["b", 2], ["c", 1], ["a", 2], ["b", 3], ["c", 2], ["b", 4], ["c", 3]]
      assert.deepStrictEqual(
        rows.map((row) => [row.eventId, row.messageKey, Number(row.seq)]),
        [...first, ...second].map((e, i) => [e.eventId, ...expected[i]!])
      )
      // Two transactions taking the same keys, listed in opposite orders, both wait behind a third
      // that holds a key in the middle; once it commits, both commit (no deadlock): each takes the
      // keys in key order, not in the order it was given them.
      const keys = Array.from({ length: 20 }, (_, i) => `k${String(i).padStart(2, "0")}`)
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const blocker = yield* sql.withTransaction(
        Outbox.append(topic, event("k10", 0)).pipe(
          Effect.zipRight(Deferred.succeed(holding, undefined)),
          Effect.zipRight(Deferred.await(release))
        )
      ).pipe(Effect.fork)
      yield* Deferred.await(holding)
      const appendAll = (order: ReadonlyArray<string>) =>
        sql.withTransaction(Outbox.append(topic, ...order.map((key, i) => event(key, i)))).pipe(Effect.fork)
      const ascending = yield* appendAll(keys)
      const descending = yield* appendAll([...keys].reverse())
      yield* Effect.sleep("300 millis")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(blocker)
      yield* Effect.all([Fiber.join(ascending), Fiber.join(descending)])
      const counters = yield* sql<{ messageKey: string; lastSeq: string }>`
        SELECT message_key, last_seq FROM kpipe_outbox_keys WHERE topic = ${topic.name} AND message_key LIKE 'k%'
        ORDER BY message_key`
      assert.deepStrictEqual(
        counters.map((row) => [row.messageKey, row.lastSeq]),
        keys.map((key) => [key, key === "k10" ? "3" : "2"])
      )
    }).pipe(Effect.provide(TestLive)))

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
    }).pipe(Effect.provide(TestLive)))

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
        // Keys and lingering are seeded per transaction, so a failure names a reproducible schedule.
        const witnessed = new Map<string, { key: string; n: number }>()
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
            events.forEach((e, j) => witnessed.set(e.eventId, { key, n: n! * 10 + j }))
            return events.length
          }).pipe(Effect.withRandom(Random.make(`outbox-order-${i}`)))

        const relays = [TestKafka.uniqueName("relay-1"), TestKafka.uniqueName("relay-2")]
        const relay = (tag: string) =>
          Layer.scopedDiscard(
            OutboxRelay.run({ batchSize: 7, pollInterval: "50 millis" }).pipe(Effect.tagMetrics("kpipe_test", tag))
          ).pipe(Layer.provide(Producer.layer()), Layer.provide(KafkaClient.layerFromEnv))
        const appended = yield* Effect.scoped(Effect.gen(function*() {
          for (const tag of relays) yield* Layer.build(relay(tag))
          const counts = yield* Effect.forEach(Array.from({ length: 120 }, (_, i) => i), transaction, {
            concurrency: 12
          })
          yield* eventually(Effect.map(OutboxRelay.stats, (stats) => stats.pending === 0))
          return counts.reduce((a, b) => a + b, 0)
        }))

        // Both relays took part, and together published each row once.
        const published = yield* Effect.forEach(relays, (tag) => counted(OutboxRelay.publishedTotal, tag))
        assert.isTrue(published.every((n) => n > 0), `published per relay: ${published}`)
        assert.strictEqual(published[0]! + published[1]!, appended)

        const records = (yield* readTopic(topic.name, appended)).map(decodeValue)
        const expected = new Map(keys.map((key) => [
          key,
          [...witnessed].filter(([, w]) => w.key === key).sort(([, x], [, y]) => x.n - y.n).map(([id]) => id)
        ]))
        assert.isTrue(keys.every((key) => expected.get(key)!.length > 2), "a key had too few transactions to order")
        assertKeyOrder(records, expected)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a relay killed with SIGKILL mid-publish and restarted repeats a key's events at most, never reorders them",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("outbox-crash-order")
        yield* createTopics(topic)
        const keys = Array.from({ length: 6 }, (_, i) => `k${i}`)
        const expected = new Map(keys.map((key) => [key, [] as Array<string>]))
        // Each key's transactions run one after another, so its commit order is its append order.
        const appendAll = Effect.forEach(keys, (key) =>
          Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) => {
            const events = Array.from({ length: 1 + (i % 3) }, (_, j) => event(key, i * 10 + j))
            return Outbox.append(topic, ...events).pipe(
              Effect.tap(() => expected.get(key)!.push(...events.map((e) => e.eventId))),
              Effect.zipLeft(Effect.sleep("20 millis"))
            )
          }, { discard: true }), { concurrency: "unbounded", discard: true })
        const url = yield* databaseUrl
        const relay = ServiceProcess.start({
          name: "relay",
          entry: replicaScript,
          args: ["relay", topic.name],
          env: { DATABASE_URL: url },
          ready: "ready",
          readyTimeout: "30 seconds"
        })

        const first = yield* relay
        const appending = yield* Effect.fork(appendAll)
        yield* eventually(Effect.map(endOffsetTotal(topic.name), (n) => n >= 60))
        yield* first.kill
        // It was killed mid-stream: appends were still coming and rows were waiting for it.
        assert.isNull(appending.unsafePoll(), "the appends were over when the relay was killed")
        assert.isAbove((yield* OutboxRelay.stats).pending, 0)
        const atKill = yield* endOffsetTotal(topic.name)

        yield* relay
        yield* Fiber.join(appending)
        yield* eventually(Effect.map(OutboxRelay.stats, (stats) => stats.pending === 0), "60 seconds")
        const total = yield* endOffsetTotal(topic.name)
        const appended = [...expected.values()].reduce((n, ids) => n + ids.length, 0)
        assert.isAbove(total, atKill, "the restarted relay published nothing")
        assert.isAtLeast(total, appended)
        assertKeyOrder((yield* readTopic(topic.name, total)).map(decodeValue), expected)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 120_000 }
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
        ["poisoned", "3", "HELD"]
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
    }).pipe(Effect.provide(TestLive)))

  it.live("a running relay wakes on commit instead of waiting for its poll", () =>
    Effect.gen(function*() {
      const topic = makeTopic("outbox-notify")
      yield* createTopics(topic)
      const ended: Array<string> = []
      const claims = claimsIn(ended)
      yield* Outbox.append(topic, event("k", 1))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* OutboxRelay.run({ pollInterval: "1 hour" }).pipe(Effect.withTracer(yield* recordingTracer(ended)))
        // It published the waiting row and looked at every shard once more when it heard that it
        // listens (what was appended before could have missed it), unless it heard that before its
        // first claim: it now waits, for an hour or a notification. Its probes after the first wake
        // no claim.
        yield* eventually(Effect.map(OutboxRelay.stats, (stats) => stats.pending === 0))
        yield* eventually(Effect.map(listeningSessions, (n) => n === 1))
        yield* Effect.sleep("2500 millis")
        const before = yield* claims
        assert.include([1, 2], before)

        yield* Outbox.append(topic, event("k", 2))
        const records = yield* readTopic(topic.name, 2).pipe(Effect.timeout("60 seconds"))
        assert.deepStrictEqual(records.map((r) => decodeValue(r).seq), [1, 2])
        // Only the notification could start another claim: one, of the shard it named, and no empty
        // claim after it.
        yield* eventually(Effect.map(claims, (n) => n === before + 1))
        yield* Effect.sleep("500 millis")
        assert.strictEqual(yield* claims, before + 1)
        assert.strictEqual(ended.filter((name) => name === "OutboxRelay.publishOnce notified").length, 1)
      }))
    }).pipe(Effect.provide(TestLive)))

  it.live("a relay starting on rows of more shards than one claim takes publishes them all at once, not a claim per poll", () =>
    Effect.gen(function*() {
      const topic = makeTopic("outbox-many-shards")
      yield* createTopics(topic)
      // Appended before the relay listens: no notification reaches it.
      yield* Outbox.append(topic, ...manyKeys())
      yield* Effect.scoped(Effect.gen(function*() {
        yield* OutboxRelay.run({ pollInterval: "1 hour" })
        const records = yield* readTopic(topic.name, 100).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(records.length, 100)
      }))
    }).pipe(Effect.provide(TestLive)))

  it.live("notified shards another relay holds are left to it: the loop waits, it does not claim them over and over", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-held")
      yield* createTopics(topic)
      const ended: Array<string> = []
      const claims = claimsIn(ended)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* OutboxRelay.run({ pollInterval: "1 hour" }).pipe(Effect.withTracer(yield* recordingTracer(ended)))
        yield* eventually(Effect.map(listeningSessions, (n) => n === 1))
        yield* Effect.sleep("500 millis")
        // Another relay's claim: every shard locked for 2 s.
        const held = yield* Deferred.make<void>()
        const holder = yield* sql.withTransaction(
          sql`SELECT shard FROM kpipe_outbox_shards FOR UPDATE`.pipe(
            Effect.zipRight(Deferred.succeed(held, void 0)),
            Effect.zipRight(Effect.sleep("2 seconds"))
          )
        ).pipe(Effect.fork)
        yield* Deferred.await(held)
        const before = yield* claims
        yield* Outbox.append(topic, ...manyKeys())
        yield* Fiber.join(holder)
        const whileHeld = (yield* claims) - before
        assert.isAtMost(whileHeld, 5, `claims while every shard was held: ${whileHeld}`)
        // The next notification brings the loop back to what it was told before.
        yield* Outbox.append(topic, event("k0", 2))
        const records = yield* readTopic(topic.name, 101).pipe(Effect.timeout("60 seconds"))
        assert.strictEqual(records.length, 101)
      }))
    }).pipe(Effect.provide(TestLive)))

  it.live("a relay that hears no notification finds the row at its next poll", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-poll")
      yield* createTopics(topic)
      const ended: Array<string> = []
      const claims = claimsIn(ended)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* OutboxRelay.run({ pollInterval: "500 millis" }).pipe(Effect.withTracer(yield* recordingTracer(ended)))
        yield* eventually(Effect.map(claims, (n) => n >= 1))
        // A row written without `Outbox.append`, so no notification is sent.
        const e = event("k", 1)
        yield* sql`
          INSERT INTO kpipe_outbox (topic, message_key, seq, shard, event_id, event_type, schema_version, payload)
          VALUES (${topic.name}, 'k', 1, kpipe_outbox_shard(${topic.name}, 'k'), ${e.eventId}, 'TestEvent', 1,
                  ${yield* topic.encode(e)}::jsonb)`
        const [record] = yield* readTopic(topic.name, 1).pipe(Effect.timeout("60 seconds"))
        assert.strictEqual(decodeValue(record!).eventId, e.eventId)
        assert.isAtLeast(yield* claims, 2)
      }))
    }).pipe(Effect.provide(TestLive)))

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
      // Appended first: the relay's first claim finds it (appended after the start, its notification
      // could come before the relay listens, on a loaded machine, and only the hour's poll would find it).
      yield* Outbox.append(topic, event("k", 1))
      yield* Effect.scoped(Effect.gen(function*() {
        // Polling never comes to the rescue: only the backoff retries the blocked claim.
        yield* OutboxRelay.run({ pollInterval: "1 hour" }).pipe(Effect.provideService(Producer.Producer, flaky))
        const records = yield* readTopic(topic.name, 1).pipe(Effect.timeout("60 seconds"))
        assert.strictEqual(records.length, 1)
        yield* eventually(Effect.map(statuses, (rows) => rows.length === 1 && rows[0]!.status === "PUBLISHED"))
      }))
      const [row] = yield* sql<
        { attempts: number; lastError: string | null }
      >`SELECT attempts, last_error FROM kpipe_outbox`
      assert.deepStrictEqual(row, { attempts: 4, lastError: null })
    }).pipe(Effect.provide(TestLive)))

  it.live("cleanup deletes published rows past retention in bounded chunks and keeps the rest", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-cleanup")
      yield* createTopics(topic)
      yield* Outbox.append(topic, ...Array.from({ length: 20 }, (_, i) => event(`k${i}`, i)))
      yield* drain
      yield* sql`UPDATE kpipe_outbox SET published_at = now() - interval '2 days' WHERE message_key IN ('k0', 'k1', 'k2', 'k3', 'k4')`
      // Two chunks' worth of old rows more, and each DELETE statement's row count recorded.
      yield* sql`
        INSERT INTO kpipe_outbox (topic, message_key, seq, shard, event_id, event_type, schema_version, payload, status,
                                  published_at)
        SELECT 'old', 'old-' || g, 1, 0, 'old-' || g, 'TestEvent', 1, '{}', 'PUBLISHED', now() - interval '3 days'
        FROM generate_series(1, 10000) AS g`
      yield* sql`CREATE TABLE cleanup_chunks (id SERIAL PRIMARY KEY, n INT NOT NULL)`
      yield* sql.unsafe(`CREATE FUNCTION record_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO cleanup_chunks (n) SELECT count(*) FROM gone; RETURN NULL; END $$`)
      yield* sql`CREATE TRIGGER record_chunk AFTER DELETE ON kpipe_outbox REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION record_chunk()`
      yield* Outbox.append(topic, event("pending", 1))
      assert.strictEqual(yield* OutboxRelay.cleanup("1 day"), 10_005)
      const chunks = yield* sql<{ n: number }>`SELECT n FROM cleanup_chunks ORDER BY id`
      assert.deepStrictEqual(chunks.map((c) => c.n), [5_000, 5_000, 5])
      assert.deepStrictEqual(yield* statuses, [{ status: "PENDING", n: 1 }, { status: "PUBLISHED", n: 15 }])
    }).pipe(Effect.provide(TestLive)))

  it.live("with a retention of zero a claim deletes the rows it publishes, in key order, and the key's count goes on", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-no-retention")
      yield* createTopics(topic)
      const first = Array.from({ length: 30 }, (_, i) => event(`k${i % 3}`, i))
      yield* sql.withTransaction(Outbox.append(topic, ...first))
      assert.strictEqual(yield* OutboxRelay.drain({ retention: 0 }), 30)
      assert.deepStrictEqual(yield* statuses, [])
      const later = Array.from({ length: 6 }, (_, i) => event(`k${i % 3}`, 30 + i))
      yield* sql.withTransaction(Outbox.append(topic, ...later))
      const seqs = yield* sql<{ seq: string }>`SELECT seq FROM kpipe_outbox WHERE message_key = 'k0' ORDER BY seq`
      assert.deepStrictEqual(seqs.map((row) => row.seq), ["11", "12"])
      assert.strictEqual(yield* OutboxRelay.drain({ retention: "0 seconds" }), 6)
      assert.deepStrictEqual(yield* statuses, [])

      const published = (yield* readTopic(topic.name, 36)).map(decodeValue)
      assertKeyOrder(
        published,
        new Map(
          ["k0", "k1", "k2"].map((
            key
          ) => [key, [...first, ...later].filter((e) => e.key === key).map((e) => e.eventId)])
        )
      )
    }).pipe(Effect.provide(TestLive)))

  it.live(
    "idle key counters are deleted, published rows kept or not; a key with a pending or FAILED row keeps its own; appends racing the cleanup keep each key's order",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("outbox-keys")
        yield* createTopics(topic)
        const counters = sql<{ messageKey: string; lastSeq: string }>`
        SELECT message_key, last_seq FROM kpipe_outbox_keys WHERE topic = ${topic.name} ORDER BY message_key`
        yield* Outbox.append(topic, event("idle", 1), event("idle", 2), event("held", 1))
        assert.strictEqual(yield* drain, 3)
        yield* Outbox.append(topic, event("held", 2))
        yield* sql`UPDATE kpipe_outbox SET status = 'FAILED' WHERE message_key = 'held' AND seq = 2`
        yield* Outbox.append(topic, event("pending", 1))
        // The published rows are kept (retention), but nothing is ordered against them any more.
        assert.strictEqual(yield* OutboxRelay.cleanupKeys, 1)
        assert.deepStrictEqual((yield* counters).map((c) => c.messageKey), ["held", "pending"])

        // A cleaned key starts again at 1 and is published after what it had before.
        const again = event("idle", 3)
        yield* Outbox.append(topic, again)
        assert.deepStrictEqual(
          (yield* counters).map((c) => [c.messageKey, Number(c.lastSeq)]),
          [["held", 2], ["idle", 1], ["pending", 1]]
        )
        const idleRows = yield* sql<{ seq: string; status: string }>`
          SELECT seq, status FROM kpipe_outbox WHERE topic = ${topic.name} AND message_key = 'idle' ORDER BY id`
        assert.deepStrictEqual(idleRows.map((r) => [r.seq, r.status]), [
          ["1", "PUBLISHED"],
          ["2", "PUBLISHED"],
          ["1", "PENDING"]
        ])

        // Appends to a few keys in their own transactions while published rows and idle counters are
        // deleted as fast as possible: no append fails, every key's records keep the commit order.
        const keys = ["r0", "r1", "r2"]
        const appended = new Map(keys.map((key) => [key, [] as Array<string>]))
        const appends = Effect.forEach(Array.from({ length: 150 }, (_, i) => i), (i) => {
          const e = event(keys[i % keys.length]!, i)
          appended.get(e.key)!.push(e.eventId)
          return sql.withTransaction(Outbox.append(topic, e))
        }, { discard: true })
        const cleanups = Effect.zipRight(
          drain,
          Effect.zipRight(OutboxRelay.cleanup("0 millis"), OutboxRelay.cleanupKeys)
        )
          .pipe(Effect.forever)
        yield* Effect.raceFirst(appends, cleanups)
        yield* drain
        const records = (yield* readTopic(topic.name, 3 + 2 + 150)).map(decodeValue)
        assertKeyOrder(records, appended)
        assertKeyOrder(records, new Map([["idle", records.filter((e) => e.key === "idle").map((e) => e.eventId)]]))
        assert.strictEqual(records.filter((e) => e.key === "idle").at(-1)?.eventId, again.eventId)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

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

        // The killed replica's session ends only once it reads the closed socket, after its blocked
        // statement ran: until then it is "active", in its transaction, and holds the claim.
        yield* eventually(Effect.map(
          sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND xact_start IS NOT NULL
          AND pid <> pg_backend_pid()`,
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
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "the relay counts what it publishes and fails, and reports its backlog and oldest pending age",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("outbox-metrics")
        yield* createTopics(topic)
        const tag = TestKafka.uniqueName("relay-metrics")
        // A row that can never be published holds back the next one of its key: a backlog of one.
        yield* Outbox.append(
          topic,
          event("poisoned", 1),
          event("poisoned", 2, "x".repeat(2 * 1024 * 1024)),
          event("poisoned", 3),
          event("healthy", 1)
        )
        yield* Effect.scoped(Effect.gen(function*() {
          yield* OutboxRelay.run({ pollInterval: "1 hour" }).pipe(Effect.tagMetrics("kpipe_test", tag))
          yield* eventually(Effect.map(counted(OutboxRelay.failedTotal, tag), (n) => n === 1))
          // The claim counts its published rows once it marked them, after the row it failed.
          yield* eventually(Effect.map(counted(OutboxRelay.publishedTotal, tag), (n) => n === 2))
          yield* eventually(Effect.map(gauged(OutboxRelay.backlog, tag), (n) => n === 1), "20 seconds")
          yield* eventually(Effect.map(gauged(OutboxRelay.oldestPendingSeconds, tag), (s) => s > 0), "20 seconds")

          // The key resumes: the backlog drains and the gauges go back to zero.
          const [failed] = yield* Effect.flatMap(
            SqlClient,
            (sql) => sql<{ id: string }>`SELECT id FROM kpipe_outbox WHERE status = 'FAILED'`
          )
          assert.isTrue(yield* OutboxRelay.skipFailed(failed!.id))
          yield* eventually(Effect.map(counted(OutboxRelay.publishedTotal, tag), (n) => n === 3))
          yield* eventually(Effect.map(gauged(OutboxRelay.backlog, tag), (n) => n === 0), "20 seconds")
          assert.strictEqual(yield* gauged(OutboxRelay.oldestPendingSeconds, tag), 0)
          assert.strictEqual(yield* counted(OutboxRelay.failedTotal, tag), 1)
        }))
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live("retryFailed republishes a FAILED row once the broker takes it, and its key resumes in order", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("outbox-retry", 1)
      const admin = yield* Admin.Admin
      yield* admin.createTopics([{ name: topic.name, partitions: 1, config: { "max.message.bytes": "4096" } }])
      yield* Outbox.append(topic, event("k", 1), event("k", 2, "x".repeat(8192)), event("k", 3))
      assert.strictEqual(yield* drain, 1)
      const [failed] = yield* sql<{ id: string }>`SELECT id FROM kpipe_outbox WHERE status = 'FAILED'`
      assert.isDefined(failed)

      // The broker now takes the record: retried, it is published, and the key's next row after it.
      const { kafka } = yield* KafkaClient.KafkaClient
      yield* Effect.acquireUseRelease(
        Effect.sync(() => kafka.admin()).pipe(Effect.tap((client) => Effect.promise(() => client.connect()))),
        (client) =>
          Effect.promise(() =>
            client.alterConfigs({
              validateOnly: false,
              resources: [{
                type: 2,
                name: topic.name,
                configEntries: [{ name: "max.message.bytes", value: "1048576" }]
              }]
            })
          ),
        (client) => Effect.promise(() => client.disconnect())
      )
      yield* eventually(
        Effect.gen(function*() {
          yield* OutboxRelay.retryFailed(failed!.id)
          yield* drain
          return (yield* statuses).every((row) => row.status === "PUBLISHED")
        }),
        "30 seconds"
      )
      const records = yield* readTopic(topic.name, 3)
      assert.deepStrictEqual(records.map((r) => decodeValue(r).seq), [1, 2, 3])
    }).pipe(Effect.provide(TestLive)))

  it.live(
    "a record the broker refuses in a send with records of other partitions: it alone is FAILED, the rest and later rows are published",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("outbox-refused-beside", 2)
        const admin = yield* Admin.Admin
        yield* admin.createTopics([{ name: topic.name, partitions: 2, config: { "max.message.bytes": "4096" } }])
        // Three records on each of eight keys spread over both partitions, and the refused one: the
        // first send writes the partition without it. Rolling back that partition's sequence numbers
        // too made every later send to it fail with OUT_OF_ORDER_SEQUENCE_NUMBER, for ever.
        const keys = Array.from({ length: 8 }, (_, i) => `k${i}`)
        const first = keys.flatMap((key) => [1, 2, 3].map((seq) => event(key, seq)))
        yield* Outbox.append(topic, ...first, event("refused", 1, "x".repeat(8192)))
        yield* drain
        assert.deepStrictEqual(yield* statuses, [{ status: "FAILED", n: 1 }, { status: "PUBLISHED", n: first.length }])
        const later = keys.map((key) => event(key, 4))
        yield* Outbox.append(topic, ...later)
        yield* drain
        assert.deepStrictEqual(yield* statuses, [
          { status: "FAILED", n: 1 },
          { status: "PUBLISHED", n: first.length + later.length }
        ])
        const expected = new Map(keys.map((key) => [
          key,
          [...first, ...later].filter((e) => e.key === key).map((e) => e.eventId)
        ]))
        assertKeyOrder((yield* readTopic(topic.name, first.length + later.length)).map(decodeValue), expected)
      }).pipe(Effect.provide(TestLive))
  )

  it.live("overlapping sends of the idempotent producer each land once, none is lost, in the order they completed", () =>
    Effect.gen(function*() {
      const topic = makeTopic("overlapping-sends", 1)
      yield* createTopics(topic)
      const producer = yield* Producer.Producer
      const completed: Array<number> = []
      const offsets = yield* Effect.forEach(
        Array.from({ length: 60 }, (_, i) => i),
        (i) =>
          producer.send({ topic: topic.name, messages: [{ key: "k", value: String(i) }] }).pipe(
            Effect.map(([metadata]) => Number(metadata!.baseOffset)),
            Effect.tap(() => Effect.sync(() => completed.push(i)))
          ),
        { concurrency: "unbounded" }
      )
      // Each send completed before the next one was written after it.
      assert.deepStrictEqual(completed.map((i) => offsets[i]), Array.from({ length: 60 }, (_, n) => n))
      const records = yield* readTopic(topic.name, 60)
      assert.deepStrictEqual(
        records.map((r) => Number(r.value!.toString())),
        completed
      )
    }).pipe(Effect.provide(TestLive)))

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
    }).pipe(Effect.provide(TestLive)))
})
