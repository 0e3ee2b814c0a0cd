import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Admin, Producer } from "@kpipe/kafka"
import { IdempotentConsumer, Redrive } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  appliedCount,
  appliedTwice,
  committedTotal,
  createTopics,
  event,
  eventually,
  makeTopic,
  produce,
  readTopic,
  recordApplied,
  type TestEvent,
  TestLive
} from "./utils.ts"

class Rejected extends Data.TaggedError("Rejected")<{ readonly key: string }> {
  override get message() {
    return `rejected ${this.key}`
  }
}

/** A topic, a group whose handler rejects the keys in `broken`, and helpers to start and stop its consumer. */
const setup = (prefix: string) =>
  Effect.gen(function*() {
    const topic = makeTopic(prefix, 1)
    yield* createTopics(topic)
    const group = TestKafka.uniqueName(`${prefix}-group`)
    const broken = new Set<string>()
    const consume = IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Rejected | SqlError, SqlClient>({
      topic,
      groupId: group,
      handle: (e) => broken.has(e.key) ? Effect.fail(new Rejected({ key: e.key })) : recordApplied(group)(e),
      errors: { Rejected: "deadLetter", SqlError: "retry" },
      kafka: TestKafka.fastConsumer
    })
    /** Runs the consumer until the returned scope is closed. */
    const startConsumer = Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Scope.extend(consume, scope)
      return scope
    })
    return { topic, group, broken, startConsumer }
  })

const openFailures = (topic: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_failed_events WHERE topic = ${topic} AND status = 'OPEN'`
  )
    .pipe(Effect.map((rows) => rows[0]!.n))

const failuresIn = (topic: string, count: number) => eventually(Effect.map(openFailures(topic), (n) => n === count))

const settle = Effect.sleep("1500 millis")

/** `count` events of key "bad" dead-lettered by the group of `prefix`, whose consumer is stopped again. */
const deadLettered = (prefix: string, count: number) =>
  Effect.gen(function*() {
    const { broken, group, startConsumer, topic } = yield* setup(prefix)
    broken.add("bad")
    const consumer = yield* startConsumer
    const failing = Array.from({ length: count }, (_, i) => event("bad", i))
    yield* produce(topic, failing)
    yield* failuresIn(topic.name, count)
    yield* Scope.close(consumer, Exit.void)
    return { group, topic, failing }
  })

/** Two events of key "k" dead-lettered by the group of `prefix`, whose consumer keeps running (`broken` rejects "k"). */
const twoFailuresOfKey = (prefix: string) =>
  Effect.gen(function*() {
    const { broken, group, startConsumer, topic } = yield* setup(prefix)
    broken.add("k")
    const consumer = yield* startConsumer
    const [first, second] = [event("k", 1), event("k", 2)]
    yield* produce(topic, [first, second])
    yield* failuresIn(topic.name, 2)
    return { broken, consumer, first, group, second, topic }
  })

/** Once `count` events are applied and the consumer stopped: their seqs, in the order they were applied. */
const appliedInOrder = (group: string, consumer: Scope.CloseableScope, count: number) =>
  Effect.gen(function*() {
    yield* eventually(Effect.map(appliedCount(group), (n) => n === count))
    yield* settle
    yield* Scope.close(consumer, Exit.void)
    const sql = yield* SqlClient
    const order = yield* sql<{ seq: number }>`SELECT seq FROM applied WHERE consumer_group = ${group} ORDER BY id`
    return order.map((r) => r.seq)
  })

describe("Redrive", () => {
  it.live(
    "groups and inspects failures, then redrives them once: a concurrent second redrive is a no-op, all audited",
    () =>
      Effect.gen(function*() {
        const { broken, group, startConsumer, topic } = yield* setup("redrive-once")
        broken.add("bad")
        const consumer = yield* startConsumer
        const failing = [event("bad", 1), event("bad", 2), event("bad", 3)]
        yield* produce(topic, [event("good", 1), ...failing])
        yield* failuresIn(topic.name, 3)

        const groups = yield* Redrive.groups({ topic: topic.name })
        assert.strictEqual(groups.length, 1)
        assert.deepInclude(groups[0], { consumerGroup: group, errorTag: "Rejected", eventType: "TestEvent", count: 3 })
        const detail = yield* Redrive.inspect(groups[0]!.sampleId)
        assert.strictEqual(detail.payload._tag, "Json")
        assert.deepInclude(detail, { topic: topic.name, consumerGroup: group, partition: 0, key: "bad" })
        assert.strictEqual(detail.deadLetterTopic, topic.deadLetter.name)
        assert.strictEqual(detail.errorMessage, "rejected bad")
        assert.strictEqual(detail.attempts, 1)
        assert.include(failing.map((e) => e.eventId), detail.eventId)

        broken.clear()
        const dry = yield* Redrive.dryRun({ topic: topic.name }, "alice")
        assert.strictEqual(dry.count, 3)
        assert.deepStrictEqual(dry.targetTopics, [{ topic: topic.name, count: 3 }])

        const [first, second] = yield* Effect.all([
          Redrive.redrive({ dryRunId: dry.dryRunId }, { actor: "alice" }),
          Redrive.redrive({ dryRunId: dry.dryRunId }, { actor: "bob" })
        ], { concurrency: 2 })
        assert.strictEqual(first.redriven + second.redriven, 3)
        assert.strictEqual(first.skipped + second.skipped, 3)

        yield* eventually(Effect.map(appliedCount(group), (n) => n === 4))
        const again = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "alice" })
        assert.strictEqual(again.total, 0)
        yield* settle
        assert.strictEqual(yield* appliedCount(group), 4)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        yield* Scope.close(consumer, Exit.void)

        const log = yield* Redrive.auditLog()
        const redrives = log.filter((entry) => entry.action === "redrive")
        assert.strictEqual(redrives.length, 3)
        assert.isTrue(redrives.every((entry) => entry.status === "SUCCEEDED"))
        assert.sameMembers(redrives.map((entry) => entry.actor), ["alice", "bob", "alice"])
        const outcomes = [
          ...(yield* Redrive.auditEvents(first.operationId)),
          ...(yield* Redrive.auditEvents(second.operationId))
        ]
        assert.sameMembers(
          outcomes.filter((o) => o.outcome === "REDRIVEN").map((o) => o.eventId),
          failing.map((e) => e.eventId)
        )
        const history = (yield* Redrive.inspect(detail.id)).history.map((h) => h.outcome)
        assert.includeMembers(history, ["SELECTED", "REDRIVEN"])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a dry-run's cutoff keeps later failures out, and a redrive racing a consumer restart applies once",
    () =>
      Effect.gen(function*() {
        const { broken, group, startConsumer, topic } = yield* setup("redrive-cutoff")
        broken.add("bad")
        const consumer = yield* startConsumer
        const early = [event("bad", 1), event("bad", 2)]
        yield* produce(topic, early)
        yield* failuresIn(topic.name, 2)
        const dry = yield* Redrive.dryRun({ topic: topic.name, errorTag: "Rejected" }, "carol")
        const late = event("bad", 3)
        yield* produce(topic, [late])
        yield* failuresIn(topic.name, 3)
        yield* Scope.close(consumer, Exit.void)

        // The restarted consumer reads the original records again while the redrive runs.
        broken.clear()
        yield* Effect.flatMap(Admin.Admin, (admin) => admin.resetOffsets(group, topic.name))
        const [result, restarted] = yield* Effect.all([
          Redrive.redrive({ dryRunId: dry.dryRunId }, { actor: "carol", batchSize: 1 }),
          startConsumer
        ], { concurrency: 2 })
        assert.strictEqual(result.total, 2)
        assert.strictEqual(result.redriven, 2)
        assert.strictEqual(yield* openFailures(topic.name), 1)
        const [open] = yield* Redrive.list({ topic: topic.name })
        assert.strictEqual(open!.eventId, late.eventId)

        yield* eventually(Effect.map(appliedCount(group), (n) => n === 2))
        yield* settle
        yield* Scope.close(restarted, Exit.void)
        assert.strictEqual(yield* appliedCount(group), 2)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a canary that fails again stops the redrive; the rest stays OPEN and a later canary run completes",
    () =>
      Effect.gen(function*() {
        const { broken, group, startConsumer, topic } = yield* setup("redrive-canary")
        broken.add("bad")
        const consumer = yield* startConsumer
        const failing = Array.from({ length: 6 }, (_, i) => event("bad", i))
        yield* produce(topic, failing)
        yield* failuresIn(topic.name, 6)

        const stopped = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "dave", canary: 2 })
        assert.strictEqual(stopped.status, "STOPPED")
        assert.strictEqual(stopped.redriven, 2)
        assert.include(String(stopped.reason), "canary failed again")
        // The two canaries failed again: they are new OPEN failures beside the four never redriven.
        yield* failuresIn(topic.name, 6)
        assert.strictEqual(yield* appliedCount(group), 0)

        broken.clear()
        const done = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "dave", canary: 2 })
        assert.strictEqual(done.status, "SUCCEEDED")
        assert.strictEqual(done.redriven, 6)
        assert.deepStrictEqual(done.canary, { size: 2, applied: 2, failedAgain: 0 })
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 6))
        yield* settle
        yield* Scope.close(consumer, Exit.void)
        assert.strictEqual(yield* appliedCount(group), 6)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
        const [last, first] = (yield* Redrive.auditLog()).filter((entry) => entry.action === "redrive")
        assert.strictEqual(first!.status, "STOPPED")
        assert.strictEqual(last!.status, "SUCCEEDED")
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "holds the rate limit, and park/restore round-trips with audit rows",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const { failing, topic } = yield* deadLettered("redrive-rate", 13)

        // The key's last event: parking an earlier one would hold the later ones (key order).
        const parked = yield* Redrive.park(
          { topic: topic.name, eventId: failing[12]!.eventId },
          "erin",
          "known bad data"
        )
        assert.strictEqual(parked.count, 1)
        assert.strictEqual((yield* Redrive.dryRun({ topic: topic.name }, "erin")).count, 12)
        const [parkedDetail] = yield* Redrive.list({ topic: topic.name, status: "PARKED" })
        assert.strictEqual((yield* Redrive.inspect(parkedDetail!.id)).statusReason, "known bad data")

        const started = Date.now()
        const result = yield* Redrive.redrive({ selection: { topic: topic.name } }, {
          actor: "erin",
          ratePerSecond: 4,
          batchSize: 2
        })
        const elapsed = Date.now() - started
        assert.strictEqual(result.redriven, 12)
        // A full bucket of 4, then 8 more at 4 per second.
        assert.isAtLeast(elapsed, 1900)
        const times = (yield* Redrive.auditEvents(result.operationId)).map((e) => e.at.getTime())
        const perWindow = times.map((t) => times.filter((u) => u >= t && u < t + 1000).length)
        assert.isAtMost(Math.max(...perWindow), 8)

        const restored = yield* Redrive.restore({ topic: topic.name }, "erin")
        assert.strictEqual(restored.count, 1)
        assert.strictEqual(yield* openFailures(topic.name), 1)
        const actions = yield* sql<{ action: string; n: number }>`
          SELECT a.action, count(e.id)::int AS n FROM kpipe_ops_audit a
          LEFT JOIN kpipe_ops_audit_events e ON e.audit_id = a.id
          WHERE a.action IN ('park', 'restore') GROUP BY a.action ORDER BY a.action`
        assert.deepStrictEqual(actions, [{ action: "park", n: 1 }, { action: "restore", n: 1 }])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a running redrive shows its progress and stops after the batch in flight when cancelled",
    () =>
      Effect.gen(function*() {
        const { topic } = yield* deadLettered("redrive-cancel", 8)

        const result = yield* Effect.scoped(Effect.gen(function*() {
          const operation = yield* Redrive.start({ selection: { topic: topic.name } }, {
            actor: "frank",
            ratePerSecond: 2,
            batchSize: 1
          })
          yield* operation.progress.changes.pipe(
            Stream.takeUntil((p) => p.redriven >= 3),
            Stream.runDrain
          )
          assert.isTrue(yield* Redrive.requestCancel(operation.operationId))
          return yield* operation.await
        }))
        assert.strictEqual(result.status, "CANCELLED")
        assert.isAtLeast(result.redriven, 3)
        assert.isBelow(result.redriven, 8)
        assert.strictEqual(yield* openFailures(topic.name), 8 - result.redriven)
        const [entry] = (yield* Redrive.auditLog()).filter((e) => e.action === "redrive")
        assert.strictEqual(entry!.status, "CANCELLED")
        assert.deepInclude(entry!.progress, { redriven: result.redriven, total: 8 })
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a record held back is no canary: the canary is the first record that goes out, and its failing again stops the rest",
    () =>
      Effect.gen(function*() {
        const { broken, group, startConsumer, topic } = yield* setup("redrive-canary-held")
        broken.add("k")
        broken.add("x")
        const consumer = yield* startConsumer
        // A redrive takes its records by key: k's before x's.
        const [first, second, other] = [event("k", 1), event("k", 2), event("x", 1)]
        yield* produce(topic, [first, second, other])
        yield* failuresIn(topic.name, 3)
        yield* Redrive.park({ topic: topic.name, eventId: first.eventId }, "jo", "looking into it")

        // `second` waits behind the parked `first`; `other` is the canary, and it fails again.
        const stopped = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "jo", canary: 1 })
        assert.deepInclude(stopped, { status: "STOPPED", redriven: 1, held: 1 })
        assert.include(String(stopped.reason), `canary failed again: ${other.eventId}`)
        yield* Scope.close(consumer, Exit.void)
        assert.strictEqual(yield* appliedCount(group), 0)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a batch size past what a statement and a produce request take is cut to Redrive.maxBatchSize; 22,000 failures go in seconds",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("redrive-big-batch", 1)
        yield* createTopics(topic)
        const count = 22_000
        yield* sql`
          INSERT INTO kpipe_failed_events (consumer_group, topic, partition, "offset", message_key, payload, headers,
            event_id, event_type, error_tag, error_message, attempts, first_attempt_at, last_attempt_at,
            dead_letter_topic)
          SELECT 'big-batch', ${topic.name}, 0, i, convert_to('k' || i, 'UTF8'), convert_to('{}', 'UTF8'), '{}',
            gen_random_uuid()::text, 'TestEvent', 'Rejected', 'no', 1, now(), now(), ${topic.deadLetter.name}
          FROM generate_series(1, ${count}) AS i`
        const result = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "kim", batchSize: 30_000 })
        assert.deepInclude(result, { status: "SUCCEEDED", redriven: count })
        assert.strictEqual((yield* readTopic(topic.name, count)).length, count)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a record that fails again after its redrive took its row is OPEN again, not left REDRIVEN",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const admin = yield* Admin.Admin
        const { broken, group, startConsumer, topic } = yield* setup("redrive-refail")
        broken.add("bad")
        const consumer = yield* startConsumer
        const failing = event("bad", 1)
        yield* produce(topic, [failing])
        yield* failuresIn(topic.name, 1)
        yield* Scope.close(consumer, Exit.void)
        assert.strictEqual((yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "lee" })).redriven, 1)

        // The source record is read anew before the copy (an offset reset) and fails again; the
        // copy is then a duplicate of that failed claim.
        yield* admin.resetOffsets(group, topic.name)
        const again = yield* startConsumer
        yield* failuresIn(topic.name, 1)
        yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 2))
        yield* Scope.close(again, Exit.void)
        const rows = yield* sql<{ status: string; statusReason: string | null }>`
          SELECT status, status_reason FROM kpipe_failed_events WHERE event_id = ${failing.eventId}`
        assert.deepStrictEqual(rows.map((row) => [row.status, row.statusReason]), [[
          "OPEN",
          "failed again after its redrive"
        ]])
        assert.strictEqual(yield* appliedCount(group), 0)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a redriven copy that failed again keeps its origin's place in its key's order",
    () =>
      Effect.gen(function*() {
        const { broken, consumer, group, topic } = yield* twoFailuresOfKey("redrive-copy-order")

        // The canary (`first`) fails again: its new failure is recorded at the copy's offset, after `second`'s.
        const stopped = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "mo", canary: 1 })
        assert.deepInclude(stopped, { status: "STOPPED", redriven: 1 })
        yield* failuresIn(topic.name, 2)

        broken.clear()
        const done = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "mo" })
        assert.deepInclude(done, { status: "SUCCEEDED", redriven: 2 })
        assert.deepStrictEqual(yield* appliedInOrder(group, consumer, 2), [1, 2])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a canary of undecodable records (no event id to watch) stops the redrive before anything is sent",
    () =>
      Effect.gen(function*() {
        const { startConsumer, topic } = yield* setup("redrive-undecodable")
        const consumer = yield* startConsumer
        const producer = yield* Producer.Producer
        yield* producer.send({
          topic: topic.name,
          messages: [{ key: "k", value: "{not json" }, { key: "k", value: "{still not json" }]
        })
        yield* failuresIn(topic.name, 2)
        yield* Scope.close(consumer, Exit.void)

        const stopped = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "ines", canary: 1 })
        assert.deepInclude(stopped, { status: "STOPPED", redriven: 0 })
        assert.include(String(stopped.reason), "no event id")
        assert.strictEqual(yield* openFailures(topic.name), 2)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a dry-run's expected count is refused once one of its failures was parked since",
    () =>
      Effect.gen(function*() {
        const { failing, topic } = yield* deadLettered("redrive-moved", 2)

        const dry = yield* Redrive.dryRun({ topic: topic.name }, "hana")
        assert.strictEqual(dry.count, 2)
        yield* Redrive.park({ topic: topic.name, eventId: failing[1]!.eventId }, "hana", "not this one")
        const changed = yield* Redrive.redrive({ dryRunId: dry.dryRunId }, { actor: "hana", expectedCount: 2 }).pipe(
          Effect.flip
        )
        assert.strictEqual(changed._tag, "SelectionChanged")
        assert.deepInclude(changed, { expected: 2, actual: 1 })
        assert.strictEqual(yield* openFailures(topic.name), 1)
        const result = yield* Redrive.redrive({ dryRunId: dry.dryRunId }, { actor: "hana", expectedCount: 1 })
        assert.deepInclude(result, { status: "SUCCEEDED", redriven: 1, skipped: 1 })
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a rate below one per second redrives a record every 1/rate seconds, and a cancel ends the wait between them",
    () =>
      Effect.gen(function*() {
        const { topic } = yield* deadLettered("redrive-slow", 4)

        // A bucket of 0.5 permits never granted the one a record costs: this waited forever.
        const firstTwo = (yield* Redrive.list({ topic: topic.name })).map((f) => f.id).sort((a, b) =>
          Number(a) - Number(b)
        )
          .slice(0, 2)
        const started = Date.now()
        const halfPerSecond = yield* Redrive.redrive({ selection: { ids: firstTwo } }, {
          actor: "gina",
          ratePerSecond: 0.5
        }).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(halfPerSecond.redriven, 2)
        assert.isAtLeast(Date.now() - started, 1900)

        const cancelled = yield* Effect.scoped(Effect.gen(function*() {
          const operation = yield* Redrive.start({ selection: { topic: topic.name } }, {
            actor: "gina",
            ratePerSecond: 0.01
          })
          yield* operation.progress.changes.pipe(Stream.takeUntil((p) => p.redriven >= 1), Stream.runDrain)
          assert.isTrue(yield* Redrive.requestCancel(operation.operationId))
          return yield* operation.await.pipe(Effect.timeout("10 seconds"))
        }))
        assert.strictEqual(cancelled.status, "CANCELLED")
        assert.strictEqual(cancelled.redriven, 1)
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "keeps a key's order: a failure waits while an earlier one of its key is held; an earlier one goes alone, once",
    () =>
      Effect.gen(function*() {
        const { broken, consumer, first, group, second, topic } = yield* twoFailuresOfKey("redrive-order")
        broken.clear()

        yield* Redrive.park({ topic: topic.name, eventId: first.eventId }, "gina", "looking into it")
        const waiting = yield* Redrive.redrive({ selection: { topic: topic.name, eventId: second.eventId } }, {
          actor: "gina"
        })
        assert.deepInclude(waiting, { total: 1, redriven: 0, held: 1 })
        assert.deepStrictEqual(
          (yield* Redrive.auditEvents(waiting.operationId)).map((e) => e.outcome),
          ["HELD"]
        )

        yield* Redrive.restore({ topic: topic.name }, "gina")
        const earlier = yield* Redrive.redrive({ selection: { topic: topic.name, eventId: first.eventId } }, {
          actor: "gina"
        })
        assert.strictEqual(earlier.redriven, 1)
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1))
        const rest = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "gina" })
        assert.deepInclude(rest, { redriven: 1, held: 0 })
        assert.deepStrictEqual(yield* appliedInOrder(group, consumer, 2), [1, 2])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "edit and redrive needs its switch, sends a new event id linked to the old one, and resolves the failure once",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const { broken, group, startConsumer, topic } = yield* setup("redrive-edit")
        broken.add("bad")
        const consumer = yield* startConsumer
        const original = event("bad", 1)
        yield* produce(topic, [original])
        yield* failuresIn(topic.name, 1)
        const [failure] = yield* Redrive.list({ topic: topic.name })
        const detail = yield* Redrive.inspect(failure!.id)
        const edited = { ...(detail.payload._tag === "Json" ? detail.payload.value as object : {}), key: "fixed" }

        const refused = yield* Effect.flip(
          Redrive.editAndRedrive(failure!.id, edited, { actor: "hal", allowEdit: false })
        )
        assert.strictEqual(refused._tag, "EditRefused")
        const { eventId } = yield* Redrive.editAndRedrive(failure!.id, edited, { actor: "hal", allowEdit: true })
        assert.notStrictEqual(eventId, original.eventId)
        const again = yield* Effect.flip(Redrive.editAndRedrive(failure!.id, edited, { actor: "hal", allowEdit: true }))
        assert.strictEqual(again._tag, "NotFound")

        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1))
        yield* settle
        yield* Scope.close(consumer, Exit.void)
        const applied = yield* sql<{ eventId: string; messageKey: string }>`
          SELECT event_id, message_key FROM applied WHERE consumer_group = ${group}`
        assert.deepStrictEqual(applied, [{ eventId, messageKey: "fixed" }])
        assert.strictEqual((yield* Redrive.inspect(failure!.id)).status, "RESOLVED")
        assert.include((yield* Redrive.inspect(failure!.id)).history.map((h) => h.outcome), "EDITED")
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "a redrive that cannot close its audit row at first (the database away) closes it once it can",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const { broken, group, startConsumer, topic } = yield* setup("redrive-close")
        broken.add("bad")
        yield* startConsumer
        yield* produce(topic, [event("bad", 1)])
        yield* failuresIn(topic.name, 1)
        broken.clear()

        // The first three attempts to close the redrive's audit row fail (a sequence is not rolled back).
        yield* sql.unsafe(`CREATE SEQUENCE close_attempts`)
        yield* sql.unsafe(`CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            IF NEW.action = 'redrive' AND NEW.status <> 'RUNNING' AND nextval('close_attempts') <= 3 THEN
              RAISE EXCEPTION 'closing refused' USING ERRCODE = '08006';
            END IF;
            RETURN NEW;
          END $$`)
        yield* sql.unsafe(`CREATE TRIGGER refuse_close BEFORE UPDATE ON kpipe_ops_audit
          FOR EACH ROW EXECUTE FUNCTION refuse_close()`)

        const result = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "ida" })
        assert.deepInclude(result, { status: "SUCCEEDED", redriven: 1 })
        const entry = yield* Redrive.operation(result.operationId)
        assert.strictEqual(entry.status, "SUCCEEDED")
        assert.isNotNull(entry.finishedAt)
        const [attempts] = yield* sql<{ lastValue: number }>`SELECT last_value::int FROM close_attempts`
        assert.strictEqual(attempts!.lastValue, 4, "three refused, the fourth closed it")
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1))
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 120_000 }
  )

  it.live(
    "an edit whose transaction fails after the send leaves the failure OPEN; editing it again sends the same event id, applied once",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const { broken, group, startConsumer, topic } = yield* setup("redrive-edit-rollback")
        broken.add("bad")
        const consumer = yield* startConsumer
        yield* produce(topic, [event("bad", 1)])
        yield* failuresIn(topic.name, 1)
        const [failure] = yield* Redrive.list({ topic: topic.name })
        const detail = yield* Redrive.inspect(failure!.id)
        const edited = { ...(detail.payload._tag === "Json" ? detail.payload.value as object : {}), key: "fixed" }

        // The audit's last statements fail: the copy is on the topic, the transaction rolls back.
        yield* sql.unsafe(`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN RAISE EXCEPTION 'audit refused'; END $$`)
        yield* sql.unsafe(`CREATE TRIGGER refuse_audit BEFORE INSERT ON kpipe_ops_audit_events
          FOR EACH ROW EXECUTE FUNCTION refuse_audit()`)
        const failed = yield* Effect.flip(
          Redrive.editAndRedrive(failure!.id, edited, { actor: "hal", allowEdit: true })
        )
        assert.strictEqual(failed._tag, "SqlError")
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 1))
        assert.strictEqual((yield* Redrive.inspect(failure!.id)).status, "OPEN")

        yield* sql.unsafe(`DROP TRIGGER refuse_audit ON kpipe_ops_audit_events`)
        const { eventId } = yield* Redrive.editAndRedrive(failure!.id, edited, { actor: "hal", allowEdit: true })
        assert.strictEqual(eventId, Redrive.editedEventId(failure!))
        yield* settle
        yield* Scope.close(consumer, Exit.void)
        const applied = yield* sql<{ eventId: string }>`SELECT event_id FROM applied WHERE consumer_group = ${group}`
        assert.deepStrictEqual(applied.map((row) => row.eventId), [eventId], "the second copy is a duplicate")
        assert.strictEqual((yield* Redrive.inspect(failure!.id)).status, "RESOLVED")
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )
})
