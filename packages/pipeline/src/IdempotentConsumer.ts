import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Consumer } from "@kpipe/kafka"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { DeadLetterSink, type Failure } from "./DeadLetter.ts"
import * as RetryPolicy from "./RetryPolicy.ts"
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
 * `handleBatch` with a single event, to find the failing one.
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
    /** Records of one partition applied in one transaction (default 100; 1 = a transaction per record). */
    readonly batchSize?: number | undefined
    readonly kafka?: Omit<Consumer.ConsumerOptions, "groupId" | "topics"> | undefined
  }

export const appliedTotal = Metric.counter("kpipe_consumer_applied_total", { incremental: true })
export const duplicatesTotal = Metric.counter("kpipe_consumer_duplicates_total", { incremental: true })
export const retriesTotal = Metric.counter("kpipe_consumer_retries_total", { incremental: true })
export const deadLetteredTotal = Metric.counter("kpipe_consumer_dead_lettered_total", { incremental: true })

type Decoded<A> = Delivered<A>

/** The handler failed (or died) inside the transaction; `index` is the record's, when one record is to blame. */
class HandlerFailed<E> extends Data.TaggedError("HandlerFailed")<{
  readonly index: number | undefined
  readonly cause: Cause.Cause<E>
}> {}

interface AttemptFailure extends Failure {
  readonly decision: RetryPolicy.Decision
  /** Which record of the transaction failed, when it is known. */
  readonly index: number | undefined
  readonly at: DateTime.Utc
}

// Tagged errors often carry their details in fields and leave `message` empty.
const describe = (error: unknown) => ({
  message: error instanceof Error && error.message !== ""
    ? error.message
    : typeof error === "string"
    ? error
    : JSON.stringify(error),
  stack: error instanceof Error ? error.stack : undefined
})

const parentOf = (record: Consumer.ConsumerRecord) => HttpTraceContext.fromHeaders(Headers.fromInput(record.headers))

/**
 * Consumes `topic` in group `groupId` and applies each event exactly once per group: the handler's
 * writes and the `(group, event id)` claim commit in one transaction, and the offset is committed
 * only after that. Failures are retried per `retry` (blocking the partition, so a key stays in
 * order) or dead-lettered as `errors` decides; undecodable records are dead-lettered at once.
 */
export const run = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B = void>(
  options: Options<A, I, E, R, B>
): Effect.Effect<void, KafkaError, KafkaClient | SqlClient | DeadLetterSink | Scope.Scope | R> =>
  Effect.gen(function*() {
    const { errors, groupId, topic } = options
    const sql = yield* SqlClient
    const sink = yield* DeadLetterSink
    const policy = options.retry ?? RetryPolicy.defaultPolicy
    const batchSize = Math.max(1, options.batchSize ?? 100)

    const failureOf = (cause: Cause.Cause<HandlerFailed<E> | SqlError>) =>
      Effect.map(DateTime.now, (at): AttemptFailure => {
        const failure = Cause.failureOption(cause)
        if (Option.isNone(failure)) {
          // COMMIT failures surface as defects in @effect/sql; like any unknown failure, worth a retry.
          return { tag: "Defect", ...describe(Cause.squash(cause)), decision: "retry", index: undefined, at }
        }
        if (failure.value._tag === "SqlError") {
          return { tag: "SqlError", ...describe(failure.value), decision: "retry", index: undefined, at }
        }
        const { cause: handlerCause, index } = failure.value
        const error = Cause.failureOption(handlerCause)
        return Option.isSome(error)
          ? {
            tag: error.value._tag,
            ...describe(error.value),
            decision: RetryPolicy.decide(errors, error.value),
            index,
            at
          }
          : { tag: "Defect", ...describe(Cause.squash(handlerCause)), decision: "retry", index, at }
      })

    const recordSpan = (name: string, record: Consumer.ConsumerRecord) => {
      const parent = parentOf(record)
      return Effect.withSpan(`${topic.name} ${name}`, {
        kind: "consumer",
        ...(Option.isSome(parent) ? { parent: parent.value } : {}),
        attributes: {
          "messaging.system": "kafka",
          "messaging.consumer.group.name": groupId,
          "messaging.kafka.partition": record.partition,
          "messaging.kafka.offset": record.offset
        }
      })
    }

    /**
     * Claims the events and applies the new ones, in order, in one transaction.
     * `continueTraces`: each handler call continues its record's trace. Off when the caller
     * already runs inside that trace (a retry), so the call nests under the attempt.
     */
    const transact = (run: ReadonlyArray<Decoded<A>>, continueTraces = true) =>
      sql.withTransaction(Effect.gen(function*() {
        const first = new Map<string, number>()
        run.forEach(({ event }, i) => {
          if (!first.has(event.eventId)) first.set(event.eventId, i)
        })
        const ids = [...first.keys()]
        const claimed = yield* sql<{ eventId: string }>`
          INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome)
          SELECT ${groupId}, e.event_id, ${topic.name}, ${run[0]!.record.partition}, e.record_offset, 'APPLIED'
          FROM unnest(${ids}::text[], ${ids.map((id) => run[first.get(id)!]!.record.offset)}::bigint[])
            AS e(event_id, record_offset)
          ON CONFLICT DO NOTHING
          RETURNING event_id`
        const fresh = new Set(claimed.map((row) => row.eventId))
        const applied: Array<Decoded<A>> = []
        const indexes: Array<number> = []
        run.forEach((item, index) => {
          if (fresh.delete(item.event.eventId)) {
            applied.push(item)
            indexes.push(index)
          }
        })
        const handleOne = options.handle
        if (handleOne === undefined) {
          if (applied.length === 0) return { events: [], result: undefined }
          const result = yield* options.handleBatch!(applied).pipe(
            Effect.sandbox,
            Effect.mapError((cause) =>
              new HandlerFailed({ index: applied.length === 1 ? indexes[0] : undefined, cause })
            ),
            continueTraces
              ? Effect.withSpan(`${topic.name} process`, {
                kind: "consumer",
                links: applied.flatMap(({ record }) =>
                  Option.match(parentOf(record), {
                    onNone: () => [],
                    onSome: (span) => [{ _tag: "SpanLink" as const, span, attributes: {} }]
                  })
                ),
                attributes: { "messaging.batch.message_count": applied.length }
              })
              : Effect.withSpan(`${topic.name} process`)
          )
          return { events: applied.map(({ event }) => event), result }
        }
        for (let i = 0; i < applied.length; i++) {
          const { event, record } = applied[i]!
          const index = indexes[i]!
          yield* Effect.annotateCurrentSpan({ "kpipe.event_id": event.eventId, "kpipe.event_type": event.type }).pipe(
            Effect.zipRight(handleOne(event, record)),
            Effect.sandbox,
            Effect.mapError((cause) => new HandlerFailed({ index, cause })),
            continueTraces ? recordSpan("process", record) : Effect.withSpan(`${topic.name} process`)
          )
        }
        return { events: applied.map(({ event }) => event), result: undefined }
      })).pipe(
        Effect.tap(({ events }) =>
          Effect.zipRight(
            Metric.incrementBy(appliedTotal, events.length),
            Metric.incrementBy(duplicatesTotal, run.length - events.length)
          )
        ),
        Effect.sandbox,
        Effect.catchAll((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.flatMap(failureOf(cause), Effect.fail)
        )
      )

    /** `transact`, then the `afterCommit` hook for what it applied, even if an interruption arrives after COMMIT. */
    const commitRun = (run: ReadonlyArray<Decoded<A>>, continueTraces = true) =>
      Effect.uninterruptibleMask((restore) =>
        restore(transact(run, continueTraces)).pipe(
          Effect.tap(({ events, result }): Effect.Effect<void, never, R> => {
            if (events.length === 0) return Effect.void
            if (options.handleBatch !== undefined) {
              return options.afterCommit === undefined ? Effect.void : options.afterCommit(events, result as B)
            }
            return options.afterCommit === undefined ? Effect.void : options.afterCommit(events)
          })
        )
      )

    const deadLetter = (
      record: Consumer.ConsumerRecord,
      failure: Failure & { readonly at: DateTime.Utc },
      attempts: number,
      firstAt: DateTime.Utc,
      event?: A
    ) =>
      sql.withTransaction(Effect.gen(function*() {
        if (event !== undefined) {
          yield* sql`
            INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome)
            VALUES (${groupId}, ${event.eventId}, ${topic.name}, ${record.partition}, ${record.offset}, 'DEAD_LETTERED')
            ON CONFLICT DO NOTHING`
        }
        yield* sink.publish({
          deadLetterTopic: topic.deadLetter.name,
          consumerGroup: groupId,
          record,
          eventId: event?.eventId,
          eventType: event?.type,
          failure: { tag: failure.tag, message: failure.message, stack: failure.stack },
          attempts,
          firstAttemptAt: firstAt,
          lastAttemptAt: failure.at
        })
      })).pipe(
        // Until the record is safely dead-lettered its offset must not move: keep trying.
        Effect.tapError((error) => Effect.logError("Dead-lettering failed; retrying, the offset stays", error)),
        Effect.retry(
          Schedule.exponential("500 millis").pipe(
            Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(30)))
          )
        ),
        Effect.orDie,
        Effect.zipRight(Metric.increment(deadLetteredTotal))
      )

    /** One record on its own, with retries, then dead-lettered if it still fails. */
    const single = (item: Decoded<A>, prior: AttemptFailure | undefined) =>
      Effect.gen(function*() {
        const driver = yield* Schedule.driver(RetryPolicy.schedule(policy))
        let attempts = prior === undefined ? 0 : 1
        let firstAt = prior?.at
        let failure = prior
        while (failure === undefined || failure.decision === "retry") {
          if (failure !== undefined) {
            const next = yield* Effect.either(driver.next(failure))
            if (next._tag === "Left") break
            yield* Metric.increment(retriesTotal)
          }
          attempts++
          const exit = yield* Effect.exit(
            commitRun([item], false).pipe(
              Effect.withSpan("IdempotentConsumer.attempt", { attributes: { attempt: attempts } })
            )
          )
          if (exit._tag === "Success") return
          const error = Cause.failureOption(exit.cause)
          if (Option.isNone(error)) return yield* Effect.failCause(exit.cause as Cause.Cause<never>)
          failure = error.value
          firstAt ??= failure.at
        }
        yield* deadLetter(item.record, failure, attempts, firstAt ?? failure.at, item.event)
      }).pipe(recordSpan("retry", item.record))

    const applyRun = (run: ReadonlyArray<Decoded<A>>): Effect.Effect<void, never, R> =>
      run.length === 0 ? Effect.void : commitRun(run).pipe(
        Effect.matchEffect({
          onSuccess: () => Effect.void,
          onFailure: (failure) => {
            const index = failure.index
            if (index === undefined) return Effect.forEach(run, (item) => single(item, undefined), { discard: true })
            return Effect.all([
              applyRun(run.slice(0, index)),
              single(run[index]!, failure),
              applyRun(run.slice(index + 1))
            ], { discard: true })
          }
        })
      )

    const handleBatch = (batch: Consumer.Batch) =>
      Effect.gen(function*() {
        let pending: Array<Decoded<A>> = []
        const flush = Effect.suspend(() => {
          const run = pending
          pending = []
          return run.length === 0
            ? Effect.void
            : Effect.zipRight(applyRun(run), batch.done(run[run.length - 1]!.record))
        })
        for (const record of batch.records) {
          const decoded = yield* Effect.either(
            record.value === null
              ? Effect.fail({ message: "record has no value" })
              : topic.decode(record.value.toString("utf8"))
          )
          if (decoded._tag === "Right") {
            pending.push({ record, event: decoded.right })
            if (pending.length >= batchSize) yield* flush
            continue
          }
          yield* flush
          const at = yield* DateTime.now
          yield* deadLetter(record, { tag: "DecodeError", message: decoded.left.message, at }, 1, at).pipe(
            recordSpan("undecodable", record)
          )
          yield* batch.done(record)
        }
        yield* flush
      }).pipe(
        Effect.withSpan("IdempotentConsumer.batch", {
          attributes: {
            "messaging.destination.name": batch.topic,
            partition: batch.partition,
            size: batch.records.length
          }
        })
      )

    yield* Consumer.runBatches({ ...options.kafka, groupId, topics: [topic.name] }, handleBatch)
  })

export const layer = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B = void>(
  options: Options<A, I, E, R, B>
): Layer.Layer<never, KafkaError, KafkaClient | SqlClient | DeadLetterSink | Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(run(options))
