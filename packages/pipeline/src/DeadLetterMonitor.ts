import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { SqlClient } from "@effect/sql/SqlClient"
import { Consumer } from "@kpipe/kafka"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { AlertSink } from "./AlertSink.ts"
import * as DeadLetter from "./DeadLetter.ts"
import { isInfrastructure } from "./internal/infrastructure.ts"
import type * as Topic from "./Topic.ts"

export const failuresTotal = Metric.counter("kpipe_dead_letters_total", {
  description: "Records read from dead-letter topics",
  incremental: true
})

export interface Options {
  readonly topic: Topic.Any
  readonly groupId: string
  readonly kafka?: Omit<Consumer.ConsumerOptions, "groupId" | "topics"> | undefined
}

const where = (record: Consumer.ConsumerRecord) => ({
  topic: record.topic,
  partition: record.partition,
  offset: record.offset
})

/**
 * Watches a topic's dead-letter topic: each record is logged in detail, kept in the failed-events
 * table (the source consumer usually stored it already; a record dead-lettered elsewhere is added),
 * raised through the `AlertSink`, and counted per source topic and error.
 */
export const run = (
  options: Options
): Effect.Effect<void, KafkaError, KafkaClient | SqlClient | AlertSink | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const sink = yield* AlertSink
    const handle = (record: Consumer.ConsumerRecord) =>
      DeadLetter.decode(record).pipe(
        Effect.flatMap(({ letter }) =>
          Effect.gen(function*() {
            yield* DeadLetter.recordFailure(sql, letter, record, record.topic)
            yield* Effect.logWarning("Dead-lettered event").pipe(Effect.annotateLogs({ ...letter }))
            yield* sink.alert({
              title: `Event dead-lettered from ${letter.originalTopic}: ${letter.errorTag}`,
              severity: "critical",
              details: {
                topic: letter.originalTopic,
                partition: letter.originalPartition,
                offset: letter.originalOffset,
                key: letter.originalKey,
                consumerGroup: letter.consumerGroup,
                error: letter.errorMessage,
                attempts: letter.attempts,
                eventId: letter.eventId
              }
            })
            yield* Metric.increment(failuresTotal).pipe(
              Effect.tagMetrics({ topic: letter.originalTopic, error: letter.errorTag })
            )
          })
        ),
        // A record without our headers was not written by the sink; it still deserves an operator's eyes.
        Effect.catchTag("ParseError", (error) =>
          sink.alert({
            title: `Unreadable record on ${record.topic}`,
            severity: "critical",
            details: { partition: record.partition, offset: record.offset, error: error.message }
          })),
        // The database away: the record waits (its partition with it), said at Warning each time.
        Effect.tapError((error) =>
          isInfrastructure(error)
            ? Effect.logWarning("A dead letter could not be recorded yet; it waits and is tried again", error).pipe(
              Effect.annotateLogs(where(record))
            )
            : Effect.void
        ),
        Effect.retry({
          schedule: Schedule.exponential("500 millis").pipe(
            Schedule.modifyDelay((_, d) => Duration.min(d, Duration.seconds(30)))
          ),
          while: isInfrastructure
        }),
        // Anything else would fail again on every try and hold every later dead letter of the
        // partition behind it: raised once, then skipped. It stays on the dead-letter topic.
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logError("A dead letter cannot be recorded in kpipe_failed_events; skipped", error).pipe(
              Effect.annotateLogs(where(record))
            ),
            sink.alert({
              title: `Dead letter on ${record.topic} not recorded`,
              severity: "critical",
              details: { ...where(record), error: error.message }
            })
          )
        ),
        Effect.withSpan("DeadLetterMonitor.handle", {
          kind: "consumer",
          // A dead letter keeps its event's `traceparent`: its handling belongs to that event's trace.
          ...Option.match(HttpTraceContext.fromHeaders(Headers.fromInput(record.headers)), {
            onNone: () => ({}),
            onSome: (parent) => ({ parent })
          }),
          attributes: { "messaging.destination.name": record.topic }
        })
      )
    yield* Consumer.run({ ...options.kafka, groupId: options.groupId, topics: [options.topic.deadLetter.name] }, handle)
  })

export const layer = (options: Options): Layer.Layer<never, KafkaError, KafkaClient | SqlClient | AlertSink> =>
  Layer.scopedDiscard(run(options))
