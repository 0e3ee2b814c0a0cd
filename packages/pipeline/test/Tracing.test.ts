import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { AlertSink, DeadLetterMonitor, IdempotentConsumer, Outbox, OutboxRelay, Redrive } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import {
  appliedIds,
  committedTotal,
  createTopics,
  event,
  eventually,
  fastRetry,
  makeTopic,
  recordApplied,
  TestEvent,
  TestLive
} from "./utils.ts"

class Rejected extends Data.TaggedError("Rejected")<{ readonly attempt: number }> {}

/** A tracer exporting to memory; a fresh exporter per test, as the SDK's shutdown stops it. */
const tracing = () => {
  const exporter = new InMemorySpanExporter()
  const layer = NodeSdk.layer(() => ({
    resource: { serviceName: "kpipe-tracing-test" },
    spanProcessor: new SimpleSpanProcessor(exporter)
  }))
  return { exporter, layer }
}

const traceOf = (span: ReadableSpan) => span.spanContext().traceId

describe("Tracing", () => {
  it.live(
    "the outbox append, the relay's publish, the handling, its retries and its dead letter share one trace",
    () => {
      const { exporter, layer: TracingLive } = tracing()
      return Effect.gen(function*() {
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
      }).pipe(Effect.provide(TestLive), Effect.provide(TracingLive))
    },
    { timeout: 60_000 }
  )

  it.live(
    "one trace covers an event from its HTTP request through retries, the dead letter and a redrive to its application",
    () => {
      const { exporter, layer: TracingLive } = tracing()
      return Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("traced-redrive", 1)
        yield* createTopics(topic)
        const placed = event("order", 1)
        const group = TestKafka.uniqueName("traced-redrive")
        const monitorGroup = TestKafka.uniqueName("traced-monitor")
        let broken = true
        let attempts = 0

        const OrdersLive = HttpRouter.empty.pipe(
          HttpRouter.post(
            "/orders",
            Effect.gen(function*() {
              const received = yield* HttpServerRequest.schemaBodyJson(TestEvent)
              yield* sql.withTransaction(Outbox.append(topic, received))
              return HttpServerResponse.empty({ status: 202 })
            })
          ),
          HttpServer.serve(),
          Layer.provideMerge(NodeHttpServer.layerTest)
        )
        const response = yield* HttpClientRequest.post("/orders").pipe(
          HttpClientRequest.schemaBodyJson(TestEvent)(placed),
          Effect.flatMap((request) => Effect.flatMap(HttpClient.HttpClient, (client) => client.execute(request))),
          Effect.scoped,
          Effect.provide(OrdersLive)
        )
        assert.strictEqual(response.status, 202)
        yield* OutboxRelay.publishOnce()

        const redriven = yield* Effect.scoped(Effect.gen(function*() {
          yield* IdempotentConsumer.run({
            topic,
            groupId: group,
            handle: (e) =>
              Effect.gen(function*() {
                if (broken) return yield* new Rejected({ attempt: ++attempts })
                yield* recordApplied(group)(e)
              }),
            errors: { SqlError: "retry", Rejected: "retry" },
            retry: fastRetry,
            kafka: TestKafka.fastConsumer
          })
          yield* DeadLetterMonitor.run({ topic, groupId: monitorGroup, kafka: TestKafka.fastConsumer }).pipe(
            Effect.provide(AlertSink.layerLog)
          )
          yield* eventually(Effect.map(committedTotal(monitorGroup, topic.deadLetter.name), (n) => n === 1))
          const [failure] = yield* Redrive.list({ topic: topic.name })
          assert.strictEqual(failure?.eventId, placed.eventId)

          broken = false
          const result = yield* Redrive.redrive({ selection: { topic: topic.name } }, { actor: "tracing-test" })
          assert.strictEqual(result.redriven, 1)
          // The original record and the redriven one.
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === 2))
          return result
        }))
        assert.deepStrictEqual(yield* appliedIds(group), [placed.eventId])
        assert.strictEqual(attempts, fastRetry.maxRetries + 1)

        const spans = exporter.getFinishedSpans()
        const idOf = (span: ReadableSpan) => span.spanContext().spanId
        const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId
        const byId = new Map(spans.map((span) => [idOf(span), span]))
        const one = (found: ReadonlyArray<ReadableSpan>, what: string) => {
          assert.lengthOf(found, 1, what)
          return found[0]!
        }
        const client = one(spans.filter((span) => span.name === "http.client POST"), "client span")
        const trace = traceOf(client)
        const inTrace = spans.filter((span) => traceOf(span) === trace)
        const named = (name: string) => inTrace.filter((span) => span.name === name)
        const only = (name: string) => one(named(name), name)

        // The request: the server span continues the client's traceparent, the append runs in the handler's transaction.
        assert.isUndefined(parentOf(client))
        assert.strictEqual(client.kind, SpanKind.CLIENT)
        const server = only("http.server POST")
        assert.strictEqual(server.kind, SpanKind.SERVER)
        assert.strictEqual(parentOf(server), idOf(client))
        const append = only("Outbox.append")
        const requestTransaction = byId.get(parentOf(append) ?? "")
        assert.strictEqual(requestTransaction?.name, "sql.transaction")
        assert.strictEqual(parentOf(requestTransaction!), idOf(server))

        // The relay's send is a trace of its own (a claim carries many requests' rows), linked to the append.
        const send = one(
          spans.filter((span) =>
            span.name === "OutboxRelay.send" && span.links.some((link) => link.context.spanId === idOf(append))
          ),
          "OutboxRelay.send linked to the append"
        )
        assert.notStrictEqual(traceOf(send), trace)
        assert.strictEqual(send.links.find((link) => link.context.spanId === idOf(append))!.context.traceId, trace)

        // The tries: the first under the record's traceparent (the append), each retry under its attempt,
        // the dead letter's publish under the retry span, the redriven one under Redrive.event.
        const tries = named(`${topic.name} process`)
        assert.isTrue(tries.every((span) => span.attributes["kpipe.event_id"] === placed.eventId))
        assert.lengthOf(tries, fastRetry.maxRetries + 2, "the tries in the trace: first, retries, redriven")
        const firstTry = one(tries.filter((span) => parentOf(span) === idOf(append)), "first try")
        assert.strictEqual(firstTry.status.code, SpanStatusCode.ERROR)
        const retry = only(`${topic.name} retry`)
        assert.strictEqual(parentOf(retry), idOf(append))
        const attemptSpans = named("IdempotentConsumer.attempt")
        assert.lengthOf(attemptSpans, fastRetry.maxRetries)
        for (const attempt of attemptSpans) {
          assert.strictEqual(parentOf(attempt), idOf(retry))
          const transaction = one(
            named("sql.transaction").filter((span) => parentOf(span) === idOf(attempt)),
            "the attempt's transaction"
          )
          const retried = one(tries.filter((span) => parentOf(span) === idOf(transaction)), "the attempt's try")
          assert.strictEqual(retried.status.code, SpanStatusCode.ERROR)
        }
        const publish = only("DeadLetterSink.publish")
        assert.strictEqual(parentOf(publish), idOf(retry))
        // The dead letter keeps the record's headers, so its monitor continues from the same traceparent.
        const monitored = only("DeadLetterMonitor.handle")
        assert.strictEqual(parentOf(monitored), idOf(append))

        const redrive = only("Redrive.event")
        assert.strictEqual(redrive.kind, SpanKind.PRODUCER)
        assert.strictEqual(parentOf(redrive), idOf(append))
        assert.strictEqual(redrive.attributes["kpipe.event_id"], placed.eventId)
        assert.strictEqual(redrive.attributes["kpipe.operation_id"], redriven.operationId)
        const applied = one(tries.filter((span) => parentOf(span) === idOf(redrive)), "the redriven try")
        assert.notStrictEqual(applied.status.code, SpanStatusCode.ERROR)

        // The operator's action is its own trace (a batch carries many events' traces): Redrive.batch is not in this one.
        const operation = one(spans.filter((span) => span.name === "Redrive.redrive"), "Redrive.redrive")
        const batch = one(spans.filter((span) => span.name === "Redrive.batch"), "Redrive.batch")
        assert.strictEqual(traceOf(batch), traceOf(operation))
        assert.notStrictEqual(traceOf(batch), trace)

        // One tree: every span of the trace hangs from the client span.
        for (const span of inTrace) {
          if (span !== client) assert.isTrue(byId.has(parentOf(span) ?? ""), `${span.name} has a parent in the trace`)
        }
      }).pipe(Effect.provide(TestLive), Effect.provide(TracingLive))
    },
    { timeout: 120_000 }
  )
})
