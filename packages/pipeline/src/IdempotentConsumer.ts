import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Consumer } from "@kpipe/kafka"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { DeadLetterSink } from "./DeadLetter.ts"
import * as internal from "./internal/consumer.ts"
import * as metrics from "./internal/metrics.ts"
import * as processedEvents from "./internal/processedEvents.ts"
import type * as RetryPolicy from "./RetryPolicy.ts"
import type * as Topic from "./Topic.ts"

/** An event with the record it came in. */
export interface Delivered<A> {
  readonly record: Consumer.ConsumerRecord
  readonly event: A
}

/**
 * How events are applied, inside the transaction that also records them as processed: one at a
 * time (`handle`), or all new events of the transaction at once (`handleBatch`, so the writes can
 * be one statement). A batch that fails is applied again one event at a time, through
 * `handleBatch` with a single event, to find the failing one — unless its error names the event it
 * is about with an `eventId` field: then that event alone is retried (the batch's call counted as
 * its first attempt) and the others are applied again each on its own.
 */
export type Handling<A, E, R, B> =
  | {
    readonly handle: (event: A, record: Consumer.ConsumerRecord) => Effect.Effect<void, E, R>
    readonly handleBatch?: undefined
    /**
     * Runs after a transaction committed, with the events it applied (never with duplicates, never
     * after a rollback): for side effects outside the database, e.g. a cache or a log line.
     */
    readonly afterCommit?: ((events: ReadonlyArray<A>) => Effect.Effect<void, never, R>) | undefined
  }
  | {
    readonly handleBatch: (events: ReadonlyArray<Delivered<A>>) => Effect.Effect<B, E, R>
    readonly handle?: undefined
    /** As with `handle`, plus what `handleBatch` returned for those events (e.g. each one's outcome). */
    readonly afterCommit?: ((events: ReadonlyArray<A>, result: B) => Effect.Effect<void, never, R>) | undefined
  }

export type Options<A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B = void> =
  & Handling<A, E, R, B>
  & {
    readonly topic: Topic.Topic<A, I>
    /** Each group applies each event once: two groups on one topic each apply it. */
    readonly groupId: string
    /** Retry or dead-letter, for every error the handler can fail with; a missing one does not compile. */
    readonly errors: RetryPolicy.ErrorPolicy<E>
    readonly retry?: RetryPolicy.RetryPolicy | undefined
    /**
     * Records applied in one transaction (default 100; 1 = a transaction per record): of one partition,
     * or, with `kafka.partitionsConsumedConcurrently` above 1, of the partitions one fetch brought.
     */
    readonly batchSize?: number | undefined
    readonly kafka?: Omit<Consumer.ConsumerOptions, "groupId" | "topics"> | undefined
    /**
     * How long the group's `(group, event id)` claims are kept (default: the topic's retention plus
     * its segment time, `Topic.readableFor`, plus one day; a record older than that cannot be
     * redelivered). Deleted every `cleanupInterval` (default 10 minutes).
     */
    readonly claimRetention?: Duration.DurationInput | undefined
    readonly cleanupInterval?: Duration.DurationInput | undefined
  }

export const appliedTotal = metrics.appliedTotal
export const duplicatesTotal = metrics.duplicatesTotal
export const retriesTotal = metrics.retriesTotal
export const deadLetteredTotal = metrics.deadLetteredTotal
export const blockedRetriesTotal = metrics.blockedRetriesTotal

/**
 * A consumer's options, typed as `run` and `layer` take them: so a service can build them in one
 * place that production runs and a test runs (e.g. instrumented, `ExactlyOnce.instrument`).
 */
export const options = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B = void>(
  options: Options<A, I, E, R, B>
): Options<A, I, E, R, B> => options

/**
 * Consumes `topic` in group `groupId` and applies each event exactly once per group: the handler's
 * writes and the `(group, event id)` claim commit in one transaction, and the offset is committed
 * only after that. Failures are retried per `retry` (blocking the partition, so a key stays in
 * order) or dead-lettered as `errors` decides; undecodable records are dead-lettered at once.
 */
export const run = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B = void>(
  options: Options<A, I, E, R, B>
): Effect.Effect<void, KafkaError, KafkaClient | SqlClient | DeadLetterSink | Scope.Scope | R> =>
  Effect.flatMap(
    internal.make(options),
    (handleBatch) =>
      Effect.zipRight(
        internal.cleanupLoop(options),
        Consumer.runBatchGroups(
          { ...options.kafka, groupId: options.groupId, topics: [options.topic.name] },
          handleBatch
        )
      )
  )

/** Deletes `groupId`'s claims on `topic` older than `olderThan`; returns how many. */
export const cleanupClaims = (
  groupId: string,
  topic: string,
  olderThan: Duration.DurationInput
): Effect.Effect<number, SqlError, SqlClient> =>
  Effect.flatMap(SqlClient, (sql) => processedEvents.cleanup(sql, groupId, topic, Duration.toMillis(olderThan))).pipe(
    Effect.withSpan("IdempotentConsumer.cleanupClaims", { attributes: { groupId, topic } })
  )

export const layer = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B = void>(
  options: Options<A, I, E, R, B>
): Layer.Layer<never, KafkaError, KafkaClient | SqlClient | DeadLetterSink | Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(run(options))
