import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Producer } from "@kpipe/kafka"
import { AlertSink, DeadLetter, DeadLetterMonitor, IdempotentConsumer } from "@kpipe/pipeline"
import { TestKafka, TestLogging, Webhook } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { committedTotal, createTopics, event, eventually, makeTopic, produce, TestLive } from "./utils.ts"

class Rejected extends Data.TaggedError("Rejected")<{ readonly reason: string }> {}

describe("DeadLetterMonitor", () => {
  it.live(
    "alerts once per dead-lettered record and keeps exactly one failed-events row for it",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("monitored", 1)
        yield* createTopics(topic)
        const alerts = yield* Queue.unbounded<AlertSink.Alert>()
        const Recording = Layer.succeed(
          AlertSink.AlertSink,
          AlertSink.AlertSink.of({ alert: (a) => Queue.offer(alerts, a) })
        )
        const rejected = [event("member-7", 1), event("member-8", 1)]
        const monitor = TestKafka.uniqueName("monitor")
        yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: TestKafka.uniqueName("source"),
            handle: (e) => Effect.fail(new Rejected({ reason: `nickname of ${e.key} taken` })),
            errors: { Rejected: "deadLetter" },
            kafka: TestKafka.fastConsumer
          })
          yield* DeadLetterMonitor.run({ topic, groupId: monitor, kafka: TestKafka.fastConsumer }).pipe(
            Effect.provide(Recording)
          )
          // The second record is dead-lettered only after the first one's alert arrived.
          for (const e of rejected) {
            yield* produce(topic, [e])
            const alert = yield* Queue.take(alerts).pipe(Effect.timeout("30 seconds"))
            assert.strictEqual(alert.severity, "critical")
            assert.include(alert.title, topic.name)
            assert.strictEqual(alert.details["eventId"], e.eventId)
            assert.strictEqual(alert.details["key"], e.key)
            assert.include(String(alert.details["error"]), `nickname of ${e.key} taken`)
          }
          // The monitor is done with both records (its offsets are committed after each alert): nothing more came.
          yield* eventually(Effect.map(committedTotal(monitor, topic.deadLetter.name), (n) => n === 2))
          assert.strictEqual(yield* Queue.size(alerts), 0)
        }))
        const rows = yield* sql<{ eventId: string }>`SELECT event_id FROM kpipe_failed_events ORDER BY id`
        assert.deepStrictEqual(rows.map((r) => r.eventId), rejected.map((e) => e.eventId))
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})

describe("DeadLetterMonitor, a dead letter its table cannot take", () => {
  it.live("is raised and skipped at once; the dead letters behind it are recorded", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const topic = makeTopic("monitor-poison", 1)
      yield* createTopics(topic)
      const alerts = yield* Queue.unbounded<AlertSink.Alert>()
      const Recording = Layer.succeed(
        AlertSink.AlertSink,
        AlertSink.AlertSink.of({ alert: (a) => Queue.offer(alerts, a) })
      )
      // Written by hand (not by the sink): a partition past the table's INTEGER column.
      const at = DateTime.unsafeNow()
      const headers = yield* Schema.encode(DeadLetter.DeadLetterHeaders)(
        new DeadLetter.DeadLetterHeaders({
          originalTopic: topic.name,
          originalPartition: 99_999_999_999,
          originalOffset: "0",
          originalTimestamp: "0",
          originalKey: "k",
          consumerGroup: "elsewhere",
          errorTag: "Rejected",
          errorMessage: "by hand",
          attempts: 1,
          firstAttemptAt: at,
          lastAttemptAt: at
        })
      )
      const producer = yield* Producer.Producer
      yield* producer.send({ topic: topic.deadLetter.name, messages: [{ key: "k", value: "{}", headers }] })
      const rejected = event("member-9", 1)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* IdempotentConsumer.run({
          topic,
          groupId: TestKafka.uniqueName("source"),
          handle: () => Effect.fail(new Rejected({ reason: "no" })),
          errors: { Rejected: "deadLetter" },
          kafka: TestKafka.fastConsumer
        })
        yield* DeadLetterMonitor.run({ topic, groupId: TestKafka.uniqueName("monitor"), kafka: TestKafka.fastConsumer })
          .pipe(Effect.provide(Recording))
        yield* produce(topic, [rejected])
        const first = yield* Queue.take(alerts).pipe(Effect.timeout("30 seconds"))
        assert.strictEqual(first.title, `Dead letter on ${topic.deadLetter.name} not recorded`)
        const second = yield* Queue.take(alerts).pipe(Effect.timeout("30 seconds"))
        assert.strictEqual(second.details["eventId"], rejected.eventId)
      }))
      const rows = yield* sql<{ eventId: string | null }>`
        SELECT event_id FROM kpipe_failed_events WHERE topic = ${topic.name} ORDER BY id`
      assert.deepStrictEqual(rows.map((r) => r.eventId), [rejected.eventId])
    }).pipe(Effect.provide(TestLive)), { timeout: 90_000 })
})

describe("AlertSink", () => {
  it.live("the webhook sink POSTs the alert as JSON", () =>
    Effect.gen(function*() {
      const hook = yield* Webhook.make
      yield* Effect.flatMap(
        AlertSink.AlertSink,
        (sink) =>
          sink.alert({ title: "DLT grew", severity: "warning", details: { topic: "member-events", attempts: 4 } })
      ).pipe(
        Effect.provide(
          AlertSink.layerWebhook(hook.url).pipe(Layer.provide(NodeHttpClient.layerUndici))
        )
      )
      const body = yield* Queue.take(hook.received)
      assert.deepStrictEqual(body, {
        text: "DLT grew",
        title: "DLT grew",
        severity: "warning",
        details: { topic: "member-events", attempts: 4 }
      })
    }).pipe(Effect.scoped, Effect.provide(TestLogging.layer)))
})
