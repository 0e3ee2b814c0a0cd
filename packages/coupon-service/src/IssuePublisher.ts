import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import type { CouponEvents } from "@kpipe/events"
import { Producer } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import { CouponConfig } from "./CouponConfig.ts"

export class IssuePublishError extends Data.TaggedError("IssuePublishError")<{
  readonly reason: "Encode" | "Send" | "ShuttingDown"
  readonly cause?: KafkaError | ParseResult.ParseError | undefined
}> {
  override get message() {
    return `Publishing the issue request failed (${this.reason})${
      this.cause === undefined ? "" : `: ${this.cause.message}`
    }`
  }
}

interface Pending {
  readonly message: Producer.ProducerMessage
  readonly done: Deferred.Deferred<void, IssuePublishError>
}

export const batchSize = Metric.histogram(
  "coupon_publish_batch_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 11 }),
  "Issue requests sent per producer request"
)

/**
 * Publishes issue requests to Kafka, many per producer request: callers queue their message and
 * wait on their own Deferred; a sender takes whatever is queued (up to `PUBLISH_MAX_BATCH`), sends it
 * in one `producer.send` (kafkajs sends one request per call) and completes every caller with the
 * outcome of that request. Batches grow with load and a lone request is sent at once.
 * `PUBLISH_LANES` senders (default 1), each with its own idempotent producer, can run side by side,
 * so what queues behind one send need not wait for it; lanes may reorder requests accepted within
 * the same few milliseconds, which issuing does not depend on (the Redis gate decided who got a
 * unit), but the default keeps acceptance order: more lanes measured no faster here.
 */
export class IssuePublisher extends Effect.Service<IssuePublisher>()("@kpipe/coupon-service/IssuePublisher", {
  scoped: Effect.gen(function*() {
    const config = yield* CouponConfig
    const { topic } = config
    const queue = yield* Queue.unbounded<Pending>()
    let open = true

    const send = (producer: Context.Tag.Service<Producer.Producer>, batch: ReadonlyArray<Pending>) =>
      producer.send({ topic: topic.name, messages: batch.map((pending) => pending.message) }).pipe(
        Effect.exit,
        Effect.flatMap((exit) => {
          const result: Exit.Exit<void, IssuePublishError> = Exit.isSuccess(exit)
            ? Exit.void
            : Exit.asVoid(Exit.mapError(exit, (cause) => new IssuePublishError({ reason: "Send", cause })))
          return Effect.forEach(batch, (pending) => Deferred.done(pending.done, result), { discard: true })
        }),
        Effect.zipRight(Metric.update(batchSize, batch.length)),
        // A batch handed to kafkajs is always seen through: its callers must learn the outcome.
        Effect.uninterruptible
      )

    // Runs last at shutdown, after the sender stopped: whoever is still queued learns it was not sent.
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(
        Effect.sync(() => {
          open = false
        }).pipe(Effect.zipRight(Queue.takeAll(queue))),
        (left) =>
          Effect.forEach(
            left,
            (pending) => Deferred.fail(pending.done, new IssuePublishError({ reason: "ShuttingDown" })),
            { discard: true }
          )
      )
    )
    for (let lane = 0; lane < config.publishLanes; lane++) {
      // acks=all and idempotent (the seed's settings); bounded retries, so a failure is answered.
      const producer = yield* Producer.make({ idempotent: true, retries: config.publishRetries })
      yield* Queue.takeBetween(queue, 1, config.publishMaxBatch).pipe(
        Effect.flatMap((batch) => send(producer, Array.from(batch))),
        Effect.forever,
        Effect.forkScoped
      )
    }

    /**
     * Resolves once Kafka acknowledged the event (acks=all), or fails: then it was not accepted.
     * A leaf span (`useSpan`, not `withSpan`): nothing runs under it, and entering a span as the
     * parent of others costs more than a cheap request.
     */
    const publish = (event: CouponEvents.CouponIssueRequested) =>
      Effect.useSpan("IssuePublisher.publish", {
        kind: "producer",
        attributes: { couponId: event.couponId },
        captureStackTrace: false
      }, (span) =>
        Effect.gen(function*() {
          if (!open) return yield* new IssuePublishError({ reason: "ShuttingDown" })
          const value = yield* topic.encode(event).pipe(
            Effect.mapError((cause) => new IssuePublishError({ reason: "Encode", cause }))
          )
          const done = yield* Deferred.make<void, IssuePublishError>()
          yield* Queue.offer(queue, {
            message: {
              key: topic.key(event),
              value,
              headers: {
                traceparent: HttpTraceContext.toHeaders(span).traceparent!,
                "kpipe-event-id": event.eventId,
                "kpipe-event-type": event.type,
                "kpipe-event-version": String(event.version)
              }
            },
            done
          })
          return yield* Deferred.await(done)
        }))

    return { publish } as const
  })
}) {}
