import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { AlertSink, DeadLetterMonitor, IdempotentConsumer } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { createServer } from "node:http"
import { createTopics, event, eventually, makeTopic, PipelineLive, produce } from "./utils.ts"

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
        const rejected = event("member-7", 1)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: TestKafka.uniqueName("source"),
            handle: () => Effect.fail(new Rejected({ reason: "nickname taken" })),
            errors: { Rejected: "deadLetter" },
            kafka: TestKafka.fastConsumer
          })
          yield* DeadLetterMonitor.run({
            topic,
            groupId: TestKafka.uniqueName("monitor"),
            kafka: TestKafka.fastConsumer
          })
            .pipe(Effect.provide(Recording))
          yield* produce(topic, [rejected])
          yield* eventually(Effect.map(Queue.size(alerts), (n) => n === 1))
        }))
        const [alert] = yield* Queue.takeAll(alerts)
        assert.strictEqual(alert!.severity, "critical")
        assert.include(alert!.title, topic.name)
        assert.strictEqual(alert!.details["eventId"], rejected.eventId)
        assert.strictEqual(alert!.details["key"], "member-7")
        assert.include(String(alert!.details["error"]), "nickname taken")
        const rows = yield* sql<{ eventId: string }>`SELECT event_id FROM kpipe_failed_events`
        assert.deepStrictEqual(rows.map((r) => r.eventId), [rejected.eventId])
      }).pipe(Effect.provide(PipelineLive)),
    { timeout: 60_000 }
  )
})

describe("AlertSink", () => {
  it.live("the webhook sink POSTs the alert as JSON", () =>
    Effect.gen(function*() {
      const received = yield* Queue.unbounded<unknown>()
      const server = yield* Effect.acquireRelease(
        Effect.async<ReturnType<typeof createServer>>((resume) => {
          const server = createServer((request, response) => {
            let body = ""
            request.on("data", (chunk) => body += chunk)
            request.on("end", () => {
              Queue.unsafeOffer(received, JSON.parse(body))
              response.writeHead(204).end()
            })
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.async<void>((resume) => {
            server.close(() => resume(Effect.void))
          })
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      yield* Effect.flatMap(
        AlertSink.AlertSink,
        (sink) =>
          sink.alert({ title: "DLT grew", severity: "warning", details: { topic: "member-events", attempts: 4 } })
      ).pipe(
        Effect.provide(
          AlertSink.layerWebhook(`http://127.0.0.1:${port}/hook`).pipe(Layer.provide(NodeHttpClient.layerUndici))
        )
      )
      const body = yield* Queue.take(received)
      assert.deepStrictEqual(body, {
        text: "DLT grew",
        title: "DLT grew",
        severity: "warning",
        details: { topic: "member-events", attempts: 4 }
      })
    }).pipe(Effect.scoped))
})
