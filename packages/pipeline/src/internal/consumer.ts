import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Consumer } from "@kpipe/kafka"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import * as DeadLetter from "../DeadLetter.ts"
import { type DeadLetter as DeadLetterEnvelope, DeadLetterSink, type Failure } from "../DeadLetter.ts"
import type { Delivered, Options } from "../IdempotentConsumer.ts"
import * as RetryPolicy from "../RetryPolicy.ts"
import * as Topic from "../Topic.ts"
import { isInfrastructure, isServerTimeout } from "./infrastructure.ts"
import { appliedTotal, blockedRetriesTotal, deadLetteredTotal, duplicatesTotal, retriesTotal } from "./metrics.ts"
import * as ProcessedEvents from "./processedEvents.ts"

/**
 * The handler failed (or died) inside the transaction; `index` is the record's, when one record is to
 * blame. `allTried`: the handler had run for every record of the run (a batch handler), so the others
 * may have failed too.
 */
class HandlerFailed<E> extends Data.TaggedError("HandlerFailed")<{
  readonly index: number | undefined
  readonly allTried: boolean
  readonly cause: Cause.Cause<E>
}> {}

interface AttemptFailure extends Failure {
  readonly decision: RetryPolicy.Decision
  /**
   * The infrastructure is away (database, connection, COMMIT, broker): not the event's fault, so it
   * is retried until the infrastructure is back and never dead-lettered.
   */
  readonly infrastructure: boolean
  /**
   * The server's lock or statement timeout: a run of many records that meets it is split, not
   * tried again whole (it may meet it on every try only for its size).
   */
  readonly timedOut?: boolean
  /** Which record of the transaction failed, when it is known. */
  readonly index: number | undefined
  /** Every record of the transaction was tried (`HandlerFailed.allTried`). */
  readonly allTried: boolean
  readonly at: DateTime.Utc
}

/** Declares a record handled: its offset is committed with the batch, or at the member's stop. */
type Done = (record: Consumer.ConsumerRecord) => Effect.Effect<void>

/** Every record of `run` declared handled: the last of each partition. */
const doneAll = <A>(run: ReadonlyArray<Delivered<A>>, done: Done) =>
  Effect.suspend(() => {
    const last = new Map<number, Consumer.ConsumerRecord>()
    for (const { record } of run) last.set(record.partition, record)
    return Effect.forEach(last.values(), done, { discard: true })
  })

/** Retries while the infrastructure is away: forever, 200 ms doubling to 5 s. */
const infrastructureBackoff = Schedule.exponential("200 millis", 2).pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5)))
)

const deadLetterBackoff = Schedule.exponential("500 millis").pipe(
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(30)))
)

/** Blocked for this long, a partition is reported at Error instead of Warning. */
const alertAfterSeconds = 30

// Tagged errors often carry their details in fields and leave `message` empty. Their fields may
// not serialize (a bigint, a cycle in a wrapped cause): the description must never throw, or the
// record could neither be retried nor dead-lettered.
const describe = (error: unknown) => ({
  message: error instanceof Error && error.message !== ""
    ? error.message
    : typeof error === "string"
    ? error
    : serialized(error),
  stack: error instanceof Error ? error.stack : undefined
})

const serialized = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_, field) => typeof field === "bigint" ? field.toString() : field) ?? String(value)
  } catch {
    return Predicate.hasProperty(value, "_tag") ? String(value._tag) : String(value)
  }
}

/**
 * The record a batch handler's failure is about: the only one, or the one whose event its error
 * names (an `eventId` field). Then that record is retried per the policy from its first attempt on
 * (`split`); otherwise each record goes through the whole policy on its own.
 */
const blamed = <A extends Topic.EventShape>(
  applied: ReadonlyArray<Delivered<A>>,
  indexes: ReadonlyArray<number>,
  cause: Cause.Cause<unknown>
): number | undefined => {
  if (applied.length === 1) return indexes[0]
  const error = Cause.failureOption(cause)
  if (Option.isNone(error) || typeof error.value !== "object" || error.value === null) return undefined
  const eventId = (error.value as { readonly eventId?: unknown }).eventId
  if (typeof eventId !== "string") return undefined
  const at = applied.findIndex(({ event }) => event.eventId === eventId)
  return at === -1 ? undefined : indexes[at]
}

const parentOf = (record: Consumer.ConsumerRecord) => HttpTraceContext.fromHeaders(Headers.fromInput(record.headers))

/**
 * The batch handler of `IdempotentConsumer.run`: claims and applies runs of a partition's records
 * in transactions, retries a failing record on its own per the policy, and dead-letters it (or an
 * undecodable record) when it is done with.
 */
export const make = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B>(
  options: Options<A, I, E, R, B>
) =>
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
          // COMMIT and ROLLBACK failures surface as defects in @effect/sql: a lost connection.
          return {
            tag: "Defect",
            ...describe(Cause.squash(cause)),
            decision: "retry",
            infrastructure: true,
            index: undefined,
            allTried: false,
            at
          }
        }
        if (failure.value._tag === "SqlError") {
          // The claim's own statements: never the event's fault.
          return {
            tag: "SqlError",
            ...describe(failure.value),
            decision: "retry",
            infrastructure: true,
            timedOut: isServerTimeout(failure.value),
            index: undefined,
            allTried: false,
            at
          }
        }
        const { allTried, cause: handlerCause, index } = failure.value
        const error = Cause.failureOption(handlerCause)
        if (Option.isSome(error)) {
          const decision = RetryPolicy.decide(errors, error.value)
          return {
            tag: error.value._tag,
            ...describe(error.value),
            decision,
            infrastructure: decision === "wait" || isInfrastructure(error.value),
            timedOut: isServerTimeout(error.value),
            index,
            allTried,
            at
          }
        }
        return {
          tag: "Defect",
          ...describe(Cause.squash(handlerCause)),
          decision: "retry",
          infrastructure: false,
          index,
          allTried,
          at
        }
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
     * `restore` makes the body interruptible (`commitRun`), and only the body: @effect/sql runs
     * BEGIN and COMMIT uninterruptibly, and a transaction made interruptible as a whole would act on
     * an interruption that arrived during COMMIT as soon as COMMIT returned, dropping its result.
     */
    const transact = (
      run: ReadonlyArray<Delivered<A>>,
      continueTraces: boolean,
      restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
    ) =>
      sql.withTransaction(restore(Effect.gen(function*() {
        const claimed = yield* ProcessedEvents.claim(
          sql,
          groupId,
          topic.name,
          run.map(({ event, record }) => ({ record, eventId: event.eventId }))
        )
        const fresh = new Set(claimed.map((row) => row.eventId))
        const applied: Array<Delivered<A>> = []
        const indexes: Array<number> = []
        const duplicates: Array<string> = []
        run.forEach((item, index) => {
          if (fresh.delete(item.event.eventId)) {
            applied.push(item)
            indexes.push(index)
          } else {
            duplicates.push(item.event.eventId)
          }
        })
        // A duplicate may be an event dead-lettered by a process that died before sending it.
        const unsent = yield* DeadLetter.unsent(sql, groupId, duplicates)
        const handleOne = options.handle
        if (handleOne === undefined) {
          if (applied.length === 0) return { events: [], result: undefined, unsent }
          const result = yield* options.handleBatch!(applied).pipe(
            Effect.sandbox,
            Effect.mapError((cause) =>
              new HandlerFailed({ index: blamed(applied, indexes, cause), allTried: applied.length > 1, cause })
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
          return { events: applied.map(({ event }) => event), result, unsent }
        }
        for (let i = 0; i < applied.length; i++) {
          const { event, record } = applied[i]!
          const index = indexes[i]!
          yield* Effect.annotateCurrentSpan({ "kpipe.event_id": event.eventId, "kpipe.event_type": event.type }).pipe(
            Effect.zipRight(handleOne(event, record)),
            Effect.sandbox,
            Effect.mapError((cause) => new HandlerFailed({ index, allTried: false, cause })),
            continueTraces ? recordSpan("process", record) : Effect.withSpan(`${topic.name} process`)
          )
        }
        return { events: applied.map(({ event }) => event), result: undefined, unsent }
      }))).pipe(
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

    /**
     * `transact`, then the `afterCommit` hook for what it applied and the run declared done, even if
     * an interruption (the member stopping, a rebalance) arrives during or after COMMIT: declared after
     * the mask, a run committed just before the stop was applied and its offset not committed. A run
     * with dead letters still to send is declared done once they are sent.
     */
    const commitRun = (run: ReadonlyArray<Delivered<A>>, done: Done, continueTraces = true) =>
      Effect.uninterruptibleMask((restore) =>
        transact(run, continueTraces, restore).pipe(
          Effect.tap(({ events, result }): Effect.Effect<void, never, R> => {
            if (events.length === 0) return Effect.void
            if (options.handleBatch !== undefined) {
              return options.afterCommit === undefined ? Effect.void : options.afterCommit(events, result as B)
            }
            return options.afterCommit === undefined ? Effect.void : options.afterCommit(events)
          }),
          Effect.tap(({ unsent }) => unsent.length === 0 ? doneAll(run, done) : Effect.void)
        )
      )

    /** Until a dead letter is recorded and sent, its offset must not move: keep trying, whatever fails. */
    const untilDone = <X, Y>(what: string, effect: Effect.Effect<X, Y>) =>
      effect.pipe(
        Effect.sandbox,
        Effect.tapError((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.void
            : Effect.logError(`${what} failed; retrying, the offset stays`, cause).pipe(
              Effect.annotateLogs({ topic: topic.name, groupId })
            )
        ),
        Effect.retry({ schedule: deadLetterBackoff, while: (cause) => !Cause.isInterruptedOnly(cause) }),
        Effect.unsandbox,
        Effect.orDie
      )

    const send = (letter: DeadLetterEnvelope) =>
      untilDone("Publishing a dead letter", sink.publish(letter)).pipe(
        Effect.zipRight(Metric.increment(deadLetteredTotal))
      )

    /** A committed run's dead letters still to send (`commitRun`), sent; then the run is done. */
    const sendUnsent = (unsent: ReadonlyArray<DeadLetterEnvelope>, run: ReadonlyArray<Delivered<A>>, done: Done) =>
      unsent.length === 0
        ? Effect.void
        : Effect.zipRight(Effect.forEach(unsent, send, { discard: true }), doneAll(run, done))

    /**
     * The claim (`DEAD_LETTERED`) and the failed-events row commit together; the dead-letter record
     * is sent after COMMIT and marked sent. A crash in between leaves it recorded and unsent, and
     * the redelivery sends it. If this group applied the event meanwhile (another member, after a
     * rebalance), nothing is dead-lettered.
     */
    const deadLetter = (
      record: Consumer.ConsumerRecord,
      failure: Failure & { readonly at: DateTime.Utc },
      attempts: number,
      firstAt: DateTime.Utc,
      event?: A
    ) => {
      const letter: DeadLetterEnvelope = {
        deadLetterTopic: topic.deadLetter.name,
        consumerGroup: groupId,
        record,
        eventId: event?.eventId,
        eventType: event?.type,
        failure: { tag: failure.tag, message: failure.message, stack: failure.stack },
        attempts,
        firstAttemptAt: firstAt,
        lastAttemptAt: failure.at
      }
      const recorded = sql.withTransaction(Effect.gen(function*() {
        if (event !== undefined) {
          const outcome = yield* ProcessedEvents.markDeadLettered(sql, groupId, topic.name, record, event.eventId)
          if (outcome === "APPLIED") return false
        }
        yield* sink.record(letter)
        return true
      }))
      return untilDone("Recording a dead letter", recorded).pipe(
        Effect.flatMap((recordedNow) => recordedNow ? send(letter) : Effect.void)
      )
    }

    /** Counted, and logged at Warning (at Error once blocked for `alertAfterSeconds`) with what waits. */
    const blocked = (run: ReadonlyArray<Delivered<A>>, failure: AttemptFailure, since: number) => {
      const blockedFor = Math.round((Date.now() - since) / 1000)
      const first = run[0]!
      return Metric.increment(blockedRetriesTotal).pipe(
        Effect.zipRight((blockedFor < alertAfterSeconds ? Effect.logWarning : Effect.logError)(
          "Infrastructure failure while applying events; the partition waits and retries",
          failure.message
        )),
        Effect.annotateLogs({
          topic: topic.name,
          partition: first.record.partition,
          offset: first.record.offset,
          ...(run.length === 1 ? { eventId: first.event.eventId } : { events: run.length }),
          groupId,
          errorTag: failure.tag,
          blockedForSeconds: blockedFor
        })
      )
    }

    /**
     * One record on its own: the infrastructure's failures are retried until it is back (the
     * partition waits, the key keeps its order); the handler's own failures follow the policy, and
     * the record is dead-lettered once it is done with.
     */
    const single = (item: Delivered<A>, prior: AttemptFailure | undefined, done: Done) =>
      Effect.gen(function*() {
        const driver = yield* Schedule.driver(RetryPolicy.schedule(policy))
        const waitForInfrastructure = yield* Schedule.driver(infrastructureBackoff)
        let attempts = prior === undefined ? 0 : 1
        let firstAt = prior?.at
        let failure = prior
        let blockedSince: number | undefined
        while (failure === undefined || failure.infrastructure || failure.decision === "retry") {
          if (failure !== undefined && failure.infrastructure) {
            blockedSince ??= Date.now()
            yield* blocked([item], failure, blockedSince)
            yield* waitForInfrastructure.next(failure).pipe(Effect.orElse(() => Effect.void))
          } else if (failure !== undefined) {
            const next = yield* Effect.either(driver.next(failure))
            if (next._tag === "Left") break
            yield* Metric.increment(retriesTotal)
          }
          attempts++
          const exit = yield* Effect.exit(
            commitRun([item], done, false).pipe(
              Effect.withSpan("IdempotentConsumer.attempt", { attributes: { attempt: attempts } })
            )
          )
          if (exit._tag === "Success") return yield* sendUnsent(exit.value.unsent, [item], done)
          const error = Cause.failureOption(exit.cause)
          if (Option.isNone(error)) return yield* Effect.failCause(exit.cause as Cause.Cause<never>)
          failure = error.value
          if (!failure.infrastructure) firstAt ??= failure.at
        }
        yield* deadLetter(item.record, failure, attempts, firstAt ?? failure.at, item.event)
        yield* done(item.record)
      }).pipe(recordSpan("retry", item.record))

    /**
     * A run that failed because the infrastructure is away, at no record of its own (the claim, COMMIT,
     * a batch handler), is tried again whole once it is back: one record at a time would multiply the
     * transactions by the run's size just when a backlog waits. A record's own wait (its handler's
     * dependency away) splits the run instead, so the records before it are not redone on each try and
     * a dependency failing now and then cannot keep a whole run from ever committing; so does the
     * server's lock or statement timeout, which a run may meet only for its size.
     * Ends with success or with the first failure that is not of that kind.
     */
    const whileInfrastructure = (
      run: ReadonlyArray<Delivered<A>>,
      failure: AttemptFailure,
      done: Done
    ): Effect.Effect<Option.Option<AttemptFailure>, never, R> =>
      Effect.gen(function*() {
        const waitForInfrastructure = yield* Schedule.driver(infrastructureBackoff)
        const since = Date.now()
        let last = failure
        while (last.infrastructure && last.index === undefined && last.timedOut !== true) {
          yield* blocked(run, last, since)
          yield* waitForInfrastructure.next(last).pipe(Effect.orElse(() => Effect.void))
          const exit = yield* Effect.either(commitRun(run, done))
          if (exit._tag === "Right") {
            yield* sendUnsent(exit.right.unsent, run, done)
            return Option.none()
          }
          last = exit.left
        }
        return Option.some(last)
      })

    const applyRun = (run: ReadonlyArray<Delivered<A>>, done: Done): Effect.Effect<void, never, R> =>
      run.length === 0 ? Effect.void : commitRun(run, done).pipe(
        Effect.matchEffect({
          onSuccess: ({ unsent }) => sendUnsent(unsent, run, done),
          onFailure: (failure) =>
            run.length > 1 && failure.infrastructure && failure.index === undefined && failure.timedOut !== true
              ? Effect.flatMap(
                whileInfrastructure(run, failure, done),
                Option.match({ onNone: () => Effect.void, onSome: (other) => split(run, other, done) })
              )
              : split(run, failure, done)
        })
      )

    /**
     * The run's failing record on its own, the records around it as runs; every record on its own
     * when the failing one is not known, and the others each on its own when a batch handler had
     * tried them all: another of them may have failed as well, and as a run it would be tried (and
     * fail) again for each record blamed before it.
     */
    const split = (
      run: ReadonlyArray<Delivered<A>>,
      failure: AttemptFailure,
      done: Done
    ): Effect.Effect<void, never, R> => {
      const index = failure.index
      const eachOnItsOwn = (items: ReadonlyArray<Delivered<A>>) =>
        Effect.forEach(items, (item) => single(item, undefined, done), { discard: true })
      if (index === undefined) return eachOnItsOwn(run)
      const around = failure.allTried ? eachOnItsOwn : (items: ReadonlyArray<Delivered<A>>) => applyRun(items, done)
      return Effect.all([
        around(run.slice(0, index)),
        single(run[index]!, failure, done),
        around(run.slice(index + 1))
      ], { discard: true })
    }

    /**
     * The batches of one fetch (several partitions), their runs applied in transactions of up to
     * `batchSize` records, whichever partitions they come from: each partition's records keep their
     * order, and a run's records are declared done per partition.
     */
    return (batches: ReadonlyArray<Consumer.Batch>) =>
      Effect.gen(function*() {
        const byTopicPartition = new Map(batches.map((batch) => [`${batch.topic}/${batch.partition}`, batch]))
        const done: Done = (record) => byTopicPartition.get(`${record.topic}/${record.partition}`)!.done(record)
        let pending: Array<Delivered<A>> = []
        const flush = Effect.suspend(() => {
          const run = pending
          pending = []
          return run.length === 0
            ? Effect.void
            : applyRun(run, done)
        })
        for (const record of batches.flatMap((batch) => batch.records)) {
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
          yield* done(record)
        }
        yield* flush
      }).pipe(
        Effect.withSpan("IdempotentConsumer.batch", {
          attributes: {
            "messaging.destination.name": batches[0]?.topic,
            partitions: batches.map((batch) => batch.partition).join(","),
            size: batches.reduce((n, batch) => n + batch.records.length, 0)
          }
        })
      )
  })

/** The group's claims past their retention are deleted periodically; a failure is logged and tried again later. */
export const cleanupLoop = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B>(
  options: Options<A, I, E, R, B>
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const retention = options.claimRetention === undefined
      ? Duration.sum(Topic.readableFor(options.topic), Duration.days(1))
      : Duration.decode(options.claimRetention)
    yield* ProcessedEvents.cleanup(sql, options.groupId, options.topic.name, Duration.toMillis(retention)).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("Cleanup of processed-event claims failed; trying again later", cause).pipe(
          Effect.annotateLogs({ groupId: options.groupId, topic: options.topic.name })
        )
      ),
      Effect.repeat(Schedule.spaced(options.cleanupInterval ?? Duration.minutes(10))),
      Effect.forkScoped
    )
  })
