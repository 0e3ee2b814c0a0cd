import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { IdempotentConsumer, Outbox, OutboxRelay } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { createTopics, event, eventually, fastRetry, makeTopic, recordApplied, TestLive } from "./utils.ts"

class Rejected extends Data.TaggedError("Rejected")<{ readonly attempt: number }> {}

const exporter = new InMemorySpanExporter()
const TracingLive = NodeSdk.layer(() => ({
  resource: { serviceName: "kpipe-tracing-test" },
  spanProcessor: new SimpleSpanProcessor(exporter)
}))

const traceOf = (span: ReadableSpan) => span.spanContext().traceId

describe("Tracing", () => {
  it.live(
    "the outbox append, the relay's publish, the handling, its retries and its dead letter share one trace",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("traced", 1)
        yield* createTopics(topic)
        const applied = event("k", 1)
        const rejected = event("k", 2)
        yield* sql.withTransaction(Outbox.append(topic, applied)).pipe(Effect.withSpan("request applied"))
        yield* sql.withTransaction(Outbox.append(topic, rejected)).pipe(Effect.withSpan("request rejected"))
        yield* OutboxRelay.publishOnce()

        const group = TestKafka.uniqueName("traced")
        let attempts = 0
        yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: group,
            handle: (e) =>
              Effect.gen(function*() {
                if (e.seq === 2) return yield* new Rejected({ attempt: ++attempts })
                yield* recordApplied(group)(e)
              }),
            errors: { SqlError: "retry", Rejected: "retry" },
            retry: fastRetry,
            kafka: TestKafka.fastConsumer
          })
          yield* eventually(Effect.map(
            Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic.name)),
            (offsets) => offsets.some(({ offset }) => offset === "2")
          ))
        }))

        const spans = exporter.getFinishedSpans()
        const named = (name: string) => spans.filter((span) => span.name === name)
        const requestOf = (name: string) => named(name)[0]!
        const appendOf = (request: ReadableSpan) =>
          named("Outbox.append").find((span) => traceOf(span) === traceOf(request))!

        const appliedAppend = appendOf(requestOf("request applied"))
        const processed = named(`${topic.name} process`).filter((span) =>
          span.attributes["kpipe.event_id"] === applied.eventId
        )
        // One span per try: the first, in a transaction with the rejected event, was rolled back.
        assert.isNotEmpty(processed)
        for (const span of processed) {
          assert.strictEqual(traceOf(span), traceOf(appliedAppend))
          assert.strictEqual(span.parentSpanContext?.spanId, appliedAppend.spanContext().spanId)
        }

        const send = named("OutboxRelay.send")[0]!
        const linked = send.links.map((link) => link.context.spanId)
        assert.include(linked, appliedAppend.spanContext().spanId)

        const rejectedTrace = traceOf(appendOf(requestOf("request rejected")))
        const inRejectedTrace = spans.filter((span) => traceOf(span) === rejectedTrace).map((span) => span.name)
        // The first try ran in the batch's transaction; the retries each have an attempt span.
        assert.strictEqual(attempts, fastRetry.maxRetries + 1)
        assert.strictEqual(inRejectedTrace.filter((name) => name === `${topic.name} process`).length, attempts)
        assert.strictEqual(
          inRejectedTrace.filter((name) => name === "IdempotentConsumer.attempt").length,
          fastRetry.maxRetries
        )
        const byId = new Map(spans.map((span) => [span.spanContext().spanId, span]))
        const underAttempt = (span: ReadableSpan): boolean => {
          const parent = byId.get(span.parentSpanContext?.spanId ?? "")
          return parent !== undefined && (parent.name === "IdempotentConsumer.attempt" || underAttempt(parent))
        }
        const retried = spans.filter((span) => span.name === `${topic.name} process` && underAttempt(span))
        assert.strictEqual(retried.length, fastRetry.maxRetries)
        assert.include(inRejectedTrace, "DeadLetterSink.publish")
        assert.include(inRejectedTrace, `${topic.name} retry`)
      }).pipe(Effect.provide(TestLive), Effect.provide(TracingLive)),
    { timeout: 60_000 }
  )
})
