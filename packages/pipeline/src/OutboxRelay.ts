import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { PgClient } from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Producer } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import { eventHeaders } from "./internal/headers.ts"
import { channel } from "./Outbox.ts"
import { outboxShards } from "./PipelineMigrations.ts"

export interface RelayOptions {
  /** Most rows published by one claim (default 1000). */
  readonly batchSize?: number | undefined
  /** Most key shards one claim locks (default 16). */
  readonly shardsPerClaim?: number | undefined
  /** Loops in this instance; each claims other shards (default 1). */
  readonly concurrency?: number | undefined
  /** Fallback when a commit notification is missed (default 1 s). */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** How long published and skipped rows are kept (default 1 day). */
  readonly retention?: Duration.DurationInput | undefined
  readonly cleanupInterval?: Duration.DurationInput | undefined
}

export interface OutboxStats {
  readonly pending: number
  readonly failed: number
  readonly oldestPendingAge: Option.Option<Duration.Duration>
}

export const publishedTotal = Metric.counter("kpipe_outbox_published_total", {
  description: "Outbox rows published to Kafka",
  incremental: true
})
export const failedTotal = Metric.counter("kpipe_outbox_failed_total", {
  description: "Outbox rows that can never be published; their key waits behind them",
  incremental: true
})
export const backlog = Metric.gauge("kpipe_outbox_backlog", { description: "Outbox rows waiting to be published" })
export const oldestPendingSeconds = Metric.gauge("kpipe_outbox_oldest_pending_seconds", {
  description: "Age of the oldest outbox row waiting to be published"
})

interface ClaimedRow {
  readonly id: string
  readonly topic: string
  readonly messageKey: string
  readonly eventId: string
  readonly eventType: string
  readonly schemaVersion: number
  readonly payload: string
  readonly headers: Record<string, string>
}

export type RoundResult =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Published"; readonly count: number }
  | { readonly _tag: "Blocked"; readonly error: KafkaError | SqlError }

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error)).slice(0, 2000)

const toMessage = (row: ClaimedRow) => ({
  key: row.messageKey,
  value: row.payload,
  headers: { ...row.headers, ...eventHeaders(row.eventId, row.eventType, row.schemaVersion) }
})

const byTopic = (rows: ReadonlyArray<ClaimedRow>) => {
  const topics = new Map<string, Array<ReturnType<typeof toMessage>>>()
  for (const row of rows) {
    const messages = topics.get(row.topic)
    if (messages === undefined) topics.set(row.topic, [toMessage(row)])
    else messages.push(toMessage(row))
  }
  return [...topics].map(([topic, messages]) => ({ topic, messages }))
}

const linksOf = (rows: ReadonlyArray<ClaimedRow>): Array<Tracer.SpanLink> =>
  rows.flatMap((row) =>
    Option.match(HttpTraceContext.fromHeaders(Headers.fromInput(row.headers)), {
      onNone: () => [],
      onSome: (span) => [{ _tag: "SpanLink" as const, span, attributes: { "kpipe.event_id": row.eventId } }]
    })
  )

/**
 * One claim: lock up to `shardsPerClaim` shards that have pending rows (skipping shards another
 * relay holds), publish their next rows in key order with one producer call, mark them published
 * with one statement, commit. Returns what happened, for the loop's pacing.
 */
export const publishOnce = (
  options: RelayOptions = {}
): Effect.Effect<RoundResult, SqlError, SqlClient | Producer.Producer> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const producer = yield* Producer.Producer
    const batchSize = options.batchSize ?? 1000
    const start = Math.floor(Math.random() * outboxShards)
    return yield* sql.withTransaction(Effect.gen(function*() {
      const shards = yield* sql<{ shard: number }>`
        SELECT s.shard FROM kpipe_outbox_shards s
        WHERE EXISTS (SELECT 1 FROM kpipe_outbox o WHERE o.shard = s.shard AND o.status = 'PENDING')
        ORDER BY (s.shard + ${start}) % ${outboxShards}
        LIMIT ${options.shardsPerClaim ?? 16}
        FOR UPDATE SKIP LOCKED`
      if (shards.length === 0) return { _tag: "Idle" } as const
      const rows = yield* sql<ClaimedRow>`
        SELECT o.id, o.topic, o.message_key, o.event_id, o.event_type, o.schema_version, o.payload::text AS payload,
               o.headers
        FROM kpipe_outbox o
        WHERE o.shard = ANY(${shards.map((s) => s.shard)}::int[]) AND o.status = 'PENDING'
          AND NOT EXISTS (
            SELECT 1 FROM kpipe_outbox f
            WHERE f.topic = o.topic AND f.message_key = o.message_key AND f.status = 'FAILED'
          )
        ORDER BY o.shard, o.topic, o.message_key, o.seq
        LIMIT ${batchSize}`
      if (rows.length === 0) return { _tag: "Idle" } as const

      const markPublished = (ids: ReadonlyArray<string>) =>
        ids.length === 0 ? Effect.void : sql`
          UPDATE kpipe_outbox SET status = 'PUBLISHED', published_at = now(), attempts = attempts + 1, last_error = NULL
          WHERE id = ANY(${ids}::bigint[])`.pipe(Effect.zipRight(Metric.incrementBy(publishedTotal, ids.length)))
      const recordError = (ids: ReadonlyArray<string>, error: KafkaError) =>
        sql`UPDATE kpipe_outbox SET attempts = attempts + 1, last_error = ${errorText(error)}
            WHERE id = ANY(${ids}::bigint[])`

      const sent = yield* producer.sendBatch(byTopic(rows)).pipe(
        Effect.withSpan("OutboxRelay.send", {
          kind: "producer",
          links: linksOf(rows),
          attributes: { "messaging.batch.message_count": rows.length }
        }),
        Effect.either
      )
      if (sent._tag === "Right") {
        yield* markPublished(rows.map((row) => row.id))
        return { _tag: "Published", count: rows.length } as const
      }
      if (sent.left.retriable) {
        yield* recordError(rows.map((row) => row.id), sent.left)
        return { _tag: "Blocked", error: sent.left } as const
      }
      // Some row cannot be published at all. Send one by one to find it: it is marked FAILED and
      // the rest of its key stays pending behind it; other keys go on.
      const published: Array<string> = []
      const failedKeys = new Set<string>()
      for (const row of rows) {
        const keyId = `${row.topic}\u001f${row.messageKey}`
        if (failedKeys.has(keyId)) continue
        const single = yield* Effect.either(producer.send({ topic: row.topic, messages: [toMessage(row)] }))
        if (single._tag === "Right") {
          published.push(row.id)
        } else if (single.left.retriable) {
          yield* markPublished(published)
          yield* recordError([row.id], single.left)
          return { _tag: "Blocked", error: single.left } as const
        } else {
          failedKeys.add(keyId)
          yield* sql`UPDATE kpipe_outbox SET status = 'FAILED', attempts = attempts + 1,
                     last_error = ${errorText(single.left)} WHERE id = ${row.id}`
          yield* Metric.increment(failedTotal)
          yield* Effect.logError("Outbox row can never be published; its key waits behind it", single.left).pipe(
            Effect.annotateLogs({ outboxId: row.id, topic: row.topic, key: row.messageKey })
          )
        }
      }
      yield* markPublished(published)
      return { _tag: "Published", count: published.length } as const
    }))
  }).pipe(Effect.withSpan("OutboxRelay.publishOnce"))

/** Claims until nothing is left to publish; returns how many rows it published. */
export const drain = (
  options: RelayOptions = {}
): Effect.Effect<number, SqlError, SqlClient | Producer.Producer> =>
  Effect.gen(function*() {
    let total = 0
    while (true) {
      const result = yield* publishOnce(options)
      if (result._tag !== "Published") return total
      total += result.count
    }
  })

export const stats: Effect.Effect<OutboxStats, SqlError, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ pending: number; failed: number; oldestMs: number | null }>`
    SELECT
      (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'PENDING') AS pending,
      (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'FAILED') AS failed,
      (SELECT (extract(epoch FROM now() - min(created_at)) * 1000)::float8 FROM kpipe_outbox WHERE status = 'PENDING')
        AS oldest_ms`
  return {
    pending: row!.pending,
    failed: row!.failed,
    oldestPendingAge: Option.map(Option.fromNullable(row!.oldestMs), (ms) => Duration.millis(Math.max(0, ms)))
  }
}).pipe(Effect.withSpan("OutboxRelay.stats"))

/** Sends a FAILED row again (after the cause was fixed); its key resumes behind it. */
export const retryFailed = (id: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql`UPDATE kpipe_outbox SET status = 'PENDING', last_error = NULL WHERE id = ${id} AND status = 'FAILED'
        RETURNING id`.pipe(
        Effect.zipLeft(sql`SELECT pg_notify(${channel}, 'retry')`),
        Effect.map((rows) => rows.length === 1)
      )
  ).pipe(Effect.withSpan("OutboxRelay.retryFailed"))

/** Gives up on a FAILED row for good; its key resumes with the next row. */
export const skipFailed = (id: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql`UPDATE kpipe_outbox SET status = 'SKIPPED', published_at = now() WHERE id = ${id} AND status = 'FAILED'
        RETURNING id`.pipe(
        Effect.zipLeft(sql`SELECT pg_notify(${channel}, 'skip')`),
        Effect.map((rows) => rows.length === 1)
      )
  ).pipe(Effect.withSpan("OutboxRelay.skipFailed"))

/** Deletes published and skipped rows older than `retention`, a bounded chunk per statement. */
export const cleanup = (retention: Duration.DurationInput) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const cutoffMs = Duration.toMillis(retention)
    let total = 0
    while (true) {
      const deleted = yield* sql<{ n: number }>`
        WITH doomed AS (
          SELECT id FROM kpipe_outbox
          WHERE status IN ('PUBLISHED', 'SKIPPED') AND published_at < now() - make_interval(secs => ${cutoffMs / 1000})
          ORDER BY published_at LIMIT 5000
        ), gone AS (DELETE FROM kpipe_outbox WHERE id IN (SELECT id FROM doomed) RETURNING 1)
        SELECT count(*)::int AS n FROM gone`
      total += deleted[0]!.n
      if (deleted[0]!.n < 5000) return total
    }
  }).pipe(Effect.withSpan("OutboxRelay.cleanup"))

const backoff = Schedule.exponential("100 millis", 2).pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5)))
)

/**
 * Runs the relay until the scope closes: `concurrency` claim loops that wake on commit
 * notifications (`pg_notify`) and poll as a fallback, plus periodic stats and cleanup.
 */
export const run = (
  options: RelayOptions = {}
): Effect.Effect<void, never, SqlClient | PgClient | Producer.Producer | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient
    const pollInterval = Duration.decode(options.pollInterval ?? Duration.seconds(1))
    // One notification wakes one idle loop: a loop that finds work keeps claiming on its own, so
    // waking them all would only add empty claims.
    const wakeup = yield* Queue.sliding<void>(1)
    const concurrency = options.concurrency ?? 1

    yield* pg.listen(channel).pipe(
      Stream.runForEach(() => Queue.offer(wakeup, void 0)),
      Effect.tapErrorCause((cause) => Effect.logWarning("Outbox notifications lost; polling meanwhile", cause)),
      Effect.retry(backoff),
      Effect.forkScoped
    )

    const loop = Effect.gen(function*() {
      let failures = 0
      while (true) {
        const result = yield* publishOnce(options).pipe(
          Effect.catchAll((error) => Effect.succeed({ _tag: "Blocked", error } as const))
        )
        if (result._tag === "Published" && result.count > 0) {
          failures = 0
          continue
        }
        if (result._tag === "Blocked") {
          failures++
          yield* Effect.logWarning("Outbox relay could not publish; backing off", result.error)
          yield* Effect.sleep(Duration.min(Duration.millis(100 * 2 ** Math.min(failures, 6)), Duration.seconds(5)))
          continue
        }
        yield* Queue.take(wakeup).pipe(Effect.timeout(pollInterval), Effect.ignore)
      }
    })
    yield* Effect.forkScoped(loop).pipe(Effect.replicateEffect(concurrency))

    const report = stats.pipe(
      Effect.tap(({ oldestPendingAge, pending }) =>
        Effect.zipRight(
          Metric.set(backlog, pending),
          Metric.set(
            oldestPendingSeconds,
            Option.match(oldestPendingAge, { onNone: () => 0, onSome: Duration.toSeconds })
          )
        )
      ),
      Effect.ignoreLogged
    )
    yield* report.pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
    const retention = options.retention ?? Duration.days(1)
    yield* cleanup(retention).pipe(
      Effect.ignoreLogged,
      Effect.repeat(Schedule.spaced(options.cleanupInterval ?? Duration.minutes(1))),
      Effect.forkScoped
    )
  })

export const layer = (
  options: RelayOptions = {}
): Layer.Layer<never, never, SqlClient | PgClient | Producer.Producer> => Layer.scopedDiscard(run(options))

/** `OUTBOX_BATCH_SIZE`, `OUTBOX_CONCURRENCY`, `OUTBOX_POLL_INTERVAL`, `OUTBOX_RETENTION` (all optional). */
export const layerConfig: Layer.Layer<never, ConfigError.ConfigError, SqlClient | PgClient | Producer.Producer> = Layer
  .unwrapEffect(
    Effect.map(
      Config.all({
        batchSize: Config.option(Config.integer("OUTBOX_BATCH_SIZE")),
        concurrency: Config.option(Config.integer("OUTBOX_CONCURRENCY")),
        pollInterval: Config.option(Config.duration("OUTBOX_POLL_INTERVAL")),
        retention: Config.option(Config.duration("OUTBOX_RETENTION"))
      }),
      (config) =>
        layer({
          batchSize: Option.getOrUndefined(config.batchSize),
          concurrency: Option.getOrUndefined(config.concurrency),
          pollInterval: Option.getOrUndefined(config.pollInterval),
          retention: Option.getOrUndefined(config.retention)
        })
    )
  )
