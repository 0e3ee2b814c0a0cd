import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { Admin, Producer } from "@kpipe/kafka"
import type { Migrations } from "@kpipe/sql"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import { eventually } from "./Eventually.ts"
import { uniqueName } from "./TestKafka.ts"

/** What one replica of a run is given: the run's topic and group, the variant, and the hold before applying. */
export interface Replica<V> {
  readonly topic: string
  readonly group: string
  readonly variant: V
  readonly hold: (eventId: string) => Effect.Effect<void>
}

/**
 * The exactly-once property of an idempotent consumer, against the real broker and database:
 * whatever the duplicates, their order, the batch handling (`variant`), a replica stopped with a
 * transaction open, a competitor in its group and a full replay, each distinct event is applied
 * once per group. Each run also proves its scenario happened: the stopped replica held an event
 * uncommitted, both replicas were members, duplicates and the replay reached the consumer (its
 * duplicate counter moved by at least that much).
 */
export interface Options<Ev extends { readonly eventId: string }, V, R> {
  /** A fresh topic for one run (3 partitions or more, so two replicas both own some); returns its name. */
  readonly topic: Effect.Effect<string, unknown, R>
  /** The `index`-th event of the pool, with key `key`. */
  readonly event: (index: number, key: string) => Ev
  readonly encode: (event: Ev) => Effect.Effect<{ readonly key: string; readonly value: string }, unknown, R>
  /**
   * A replica of the consumer under test in `group`, on `topic`, configured by `variant`. Its
   * handler must run `hold(eventId)` inside the consumer's transaction before applying an event.
   */
  readonly consumer: (replica: Replica<V>) => Layer.Layer<never, unknown, R>
  /** The ids of the events `group` applied, one entry per application. */
  readonly applied: (group: string) => Effect.Effect<ReadonlyArray<string>, unknown, R>
  /** The consumer's duplicate counter for `group` (records it skipped as already applied). */
  readonly duplicates: (group: string) => Effect.Effect<number, unknown, R>
  readonly variants: ReadonlyArray<V>
  /**
   * Whether a second group consumes the same records into the same database meanwhile (default
   * true). False for a handler whose writes are unique per event whatever the group (e.g. one stock
   * reservation per order), which in production only its own group applies.
   */
  readonly otherGroup?: boolean | undefined
  /** How long a step may take before the run fails (default 60 s). */
  readonly timeout?: Duration.DurationInput | undefined
}

export interface Sample<V> {
  /** Indexes into the pool of 12 events (5 keys), in delivery order; at least one is repeated. */
  readonly deliveries: ReadonlyArray<number>
  readonly variant: V
  /** Whether both groups are replayed from the beginning once everything was applied. */
  readonly redeliver: boolean
}

const poolSize = 12

const hasRepeat = (deliveries: ReadonlyArray<number>) => new Set(deliveries).size < deliveries.length

/** The samples, as the one argument of a property (`it.prop(name, arbitraries(variants), ([sample]) => …)`). */
export const arbitraries = <V>(variants: ReadonlyArray<V>): [FastCheck.Arbitrary<Sample<V>>] => [
  FastCheck.record({
    deliveries: FastCheck.array(FastCheck.nat({ max: poolSize - 1 }), { minLength: 2, maxLength: 40 }).filter(
      hasRepeat
    ),
    variant: FastCheck.constantFrom(...variants),
    redeliver: FastCheck.boolean()
  })
]

/** Forced examples: every variant with and without a replay, over deliveries that repeat and reorder. */
export const examples = <V>(variants: ReadonlyArray<V>): Array<[Sample<V>]> =>
  variants.flatMap((variant, i) =>
    [false, true].map((redeliver): [Sample<V>] => [{
      deliveries: i % 2 === 0 ? [0, 1, 2, 3, 4, 5, 6, 0, 7, 8, 3, 9, 10, 11, 6, 6] : [11, 5, 0, 5, 11, 1, 2, 0, 10],
      variant,
      redeliver
    }])
  )

/**
 * The `fastCheck` parameters of the property: every forced example, then `generated` random samples
 * (fast-check counts the examples in `numRuns`).
 */
export const runs = <V>(variants: ReadonlyArray<V>, generated: number) => {
  const forced = examples(variants)
  return { numRuns: forced.length + generated, examples: forced }
}

class PreconditionFailed extends Error {}

const check = (holds: boolean, message: string) => holds ? Effect.void : Effect.fail(new PreconditionFailed(message))

const committedTotal = (group: string, topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic)).pipe(
    Effect.map((offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0))
  )

/** One run of the property; fails with what did not hold. */
export const property = <Ev extends { readonly eventId: string }, V, R>(options: Options<Ev, V, R>) =>
(
  sample: Sample<V>
): Effect.Effect<void, unknown, R | Admin.Admin | Producer.Producer> =>
  Effect.gen(function*() {
    const timeout = options.timeout ?? "60 seconds"
    const admin = yield* Admin.Admin
    const producer = yield* Producer.Producer
    const topic = yield* options.topic
    const pool = Array.from({ length: poolSize }, (_, i) => options.event(i, `key-${i % 5}`))
    const sent = sample.deliveries.map((i) => pool[i]!)
    yield* producer.send({ topic, messages: yield* Effect.forEach(sent, options.encode) })
    const distinct = [...new Set(sent.map((event) => event.eventId))].sort()
    const group = uniqueName("exactly-once")
    const other = uniqueName("exactly-once-other")
    const groups = options.otherGroup === false ? [group] : [group, other]
    const pass = () => Effect.void
    const replica = (
      group: string,
      hold: (eventId: string) => Effect.Effect<void> = pass
    ): Effect.Effect<void, unknown, R | Scope.Scope> =>
      Layer.build(options.consumer({ topic, group, variant: sample.variant, hold }))
    const allCommitted = (groups: ReadonlyArray<string>) =>
      eventually(
        Effect.map(
          Effect.forEach(groups, (g) => committedTotal(g, topic)),
          (totals) => totals.every((total) => total === sent.length)
        ),
        timeout,
        "every record committed"
      )

    // 1. A replica alone takes the first event and stops with its transaction open.
    const held = yield* Deferred.make<string>()
    const heldId = yield* Effect.scoped(Effect.gen(function*() {
      yield* replica(group, (eventId) => Effect.zipRight(Deferred.succeed(held, eventId), Effect.never))
      const eventId = yield* Deferred.await(held).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new PreconditionFailed("no event reached the replica")
        })
      )
      yield* check((yield* options.applied(group)).length === 0, "an event was applied while the replica held one")
      yield* check((yield* committedTotal(group, topic)) === 0, "an offset was committed before the held event")
      return eventId
    }))

    // 2. It restarts beside a competitor; another group (unless `otherGroup` is false) consumes the
    // same records meanwhile.
    const before = yield* Effect.forEach(groups, options.duplicates)
    const pair = Effect.gen(function*() {
      yield* replica(group)
      yield* replica(group)
      if (groups.includes(other)) yield* replica(other)
      yield* allCommitted(groups)
      const members = (yield* admin.describeGroup(group)).memberIds.length
      yield* check(members === 2, `the group had ${members} members, not 2 competing replicas`)
    })
    yield* Effect.scoped(pair)

    // 3. Optionally the whole topic again, from the beginning, to every group.
    if (sample.redeliver) {
      yield* Effect.forEach(groups, (g) => admin.resetOffsets(g, topic), { discard: true })
      yield* check((yield* committedTotal(group, topic)) === 0, "the replay did not rewind the group")
      yield* Effect.scoped(pair)
    }

    // Each distinct event once; and the scenario happened: duplicates and the replay reached the
    // consumers and were skipped.
    const redelivered = sample.redeliver ? sent.length : 0
    for (const [i, g] of groups.entries()) {
      const start = before[i]!
      const applied = [...(yield* options.applied(g))].sort()
      yield* check(
        JSON.stringify(applied) === JSON.stringify(distinct),
        `group ${g} applied ${JSON.stringify(applied)}, expected each of ${JSON.stringify(distinct)} once`
      )
      const skipped = (yield* options.duplicates(g)) - start
      yield* check(
        skipped >= sent.length - distinct.length + redelivered,
        `group ${g} skipped ${skipped} duplicates, expected at least ${sent.length - distinct.length + redelivered}`
      )
    }
    yield* check(distinct.includes(heldId), "the held event is not one of those sent")
  })

/**
 * The table an instrumented consumer writes what it applied to (`instrument`); add it to the test
 * database's migrations.
 */
export const appliedTable: Migrations.MigrationsOptions = {
  table: "exactly_once_migrations",
  loader: Migrator.fromRecord({ "0001_exactly_once_applied": Effect.suspend(() => createAppliedTable) })
}

/**
 * `appliedTable`, on a database migrated without it. The properties of one test file start
 * together on one database, and `IF NOT EXISTS` does not guard against a concurrent `CREATE`
 * (both pass the check, the second fails on the catalog), so the creations take turns.
 */
export const createAppliedTable = Effect.flatMap(SqlClient, (sql) =>
  sql.withTransaction(Effect.zipRight(
    sql`SELECT pg_advisory_xact_lock(hashtext('exactly_once_applied'))`,
    sql`
      CREATE TABLE IF NOT EXISTS exactly_once_applied (
        id bigserial PRIMARY KEY,
        consumer_group text NOT NULL,
        event_id text NOT NULL
      )`
  )).pipe(Effect.asVoid))

/** The ids of the events `group` applied, one entry per application (`Options.applied`). */
export const appliedIn = (group: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ readonly eventId: string }>`
      SELECT event_id FROM exactly_once_applied WHERE consumer_group = ${group}`.pipe(
      Effect.map((rows) => rows.map((row) => row.eventId))
    ))

/** How an idempotent consumer applies events: one at a time, or a batch of delivered events. */
export interface Handling {
  readonly handle?: ((event: never, record: never) => Effect.Effect<unknown, unknown, unknown>) | undefined
  readonly handleBatch?: ((delivered: never) => Effect.Effect<unknown, unknown, unknown>) | undefined
}

type Handle = (event: { readonly eventId: string }, record: unknown) => Effect.Effect<unknown, unknown, unknown>
type HandleBatch = (
  delivered: ReadonlyArray<{ readonly event: { readonly eventId: string } }>
) => Effect.Effect<unknown, unknown, unknown>

/**
 * A consumer's own options (`IdempotentConsumer` options: topic, handler, errors, retry, batch
 * settings), with `hold(eventId)` and a row in `exactly_once_applied` put before its handler, in
 * the transaction that applies the events: so `appliedIn(group)` is exactly what was committed.
 */
export const instrument = <O extends Handling>(
  options: O,
  group: string,
  hold: (eventId: string) => Effect.Effect<void>
): Effect.Effect<O, never, SqlClient> =>
  Effect.map(SqlClient, (sql) => {
    const before = (eventIds: ReadonlyArray<string>) =>
      Effect.zipRight(
        Effect.forEach(eventIds, hold, { discard: true }),
        // The table has no constraint to break; a failed insert here is the test's own fault.
        Effect.orDie(
          sql`INSERT INTO exactly_once_applied ${
            sql.insert(eventIds.map((eventId) => ({ consumerGroup: group, eventId })))
          }`
        )
      )
    const handleBatch = options.handleBatch as HandleBatch | undefined
    const handle = options.handle as Handle | undefined
    return handleBatch !== undefined
      ? {
        ...options,
        handleBatch: (delivered: Parameters<HandleBatch>[0]) =>
          Effect.zipRight(before(delivered.map(({ event }) => event.eventId)), handleBatch(delivered))
      }
      : {
        ...options,
        handle: (event: Parameters<Handle>[0], record: unknown) =>
          Effect.zipRight(before([event.eventId]), handle!(event, record))
      }
  })

/** The tag that `replica` puts on the consumer's metrics: the run's group. */
const metricTag = "kpipe_test"

/**
 * A replica for `Options.consumer`: the consumer's options (an `IdempotentConsumer` options object,
 * already on the run's topic and group) instrumented with `hold`, run by `run` (the toolkit's
 * `IdempotentConsumer.run`) for the life of the layer, its metrics tagged with the group so that
 * `taggedCount` reads this run's counters only.
 */
export const replica = <O extends Handling, E, R>(
  run: (options: O) => Effect.Effect<void, E, R>,
  options: O,
  args: { readonly group: string; readonly hold: (eventId: string) => Effect.Effect<void> }
): Layer.Layer<never, E, SqlClient | Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    Effect.flatMap(
      instrument(options, args.group, args.hold),
      (instrumented) => Effect.tagMetrics(run(instrumented), metricTag, args.group)
    )
  )

/** A counter's value for `group`'s replicas (e.g. the consumer's duplicates counter, for `Options.duplicates`). */
export const taggedCount = (counter: Metric.Metric.Counter<number>, group: string) =>
  Effect.map(Metric.value(Metric.tagged(counter, metricTag, group)), (state) => state.count)
