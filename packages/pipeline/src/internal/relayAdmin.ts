import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Producer } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { channel } from "../Outbox.ts"
import type { OutboxStats, RelayOptions, TopicBacklog } from "../OutboxRelay.ts"
import { makeState, publishOnce } from "./relayClaim.ts"

export const drain = (
  options: RelayOptions
): Effect.Effect<number, SqlError | KafkaError, SqlClient | Producer.Producer> =>
  Effect.gen(function*() {
    const state = makeState()
    let total = 0
    while (true) {
      const result = yield* publishOnce(options, state)
      if (result._tag === "Blocked") return yield* Effect.fail(result.error)
      if (result._tag !== "Published") return total
      total += result.count
    }
  })

export const stats: Effect.Effect<OutboxStats, SqlError, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ pending: number; failed: number; oldestMs: number | null }>`
    SELECT
      (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'PENDING')
        + (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'HELD') AS pending,
      (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'FAILED') AS failed,
      (SELECT (extract(epoch FROM now() - min(created_at)) * 1000)::float8
       FROM kpipe_outbox WHERE status IN ('PENDING', 'HELD')) AS oldest_ms`
  return {
    pending: row!.pending,
    failed: row!.failed,
    oldestPendingAge: Option.map(Option.fromNullable(row!.oldestMs), (ms) => Duration.millis(Math.max(0, ms)))
  }
}).pipe(Effect.withSpan("OutboxRelay.stats"))

export const backlogByTopic = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ topic: string; pending: number; oldestMs: number }>`
    SELECT topic, count(*)::int AS pending, (extract(epoch FROM now() - min(created_at)) * 1000)::float8 AS oldest_ms
    FROM kpipe_outbox WHERE status IN ('PENDING', 'HELD') GROUP BY topic`
  return rows.map((row): TopicBacklog => ({
    topic: row.topic,
    pending: row.pending,
    oldestPendingAge: Duration.millis(Math.max(0, row.oldestMs))
  }))
}).pipe(Effect.withSpan("OutboxRelay.backlogByTopic"))

/**
 * Moves a FAILED row to `status`, the rows held behind it back to pending, and wakes the relays;
 * false when the row is not FAILED.
 */
const resolveFailed = (id: string, status: "PENDING" | "SKIPPED") =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.withTransaction(Effect.gen(function*() {
      const set = status === "PENDING"
        ? sql`status = 'PENDING', last_error = NULL`
        : sql`status = 'SKIPPED', published_at = now()`
      const [resolved] = yield* sql<{ topic: string; messageKey: string }>`
        UPDATE kpipe_outbox SET ${set} WHERE id = ${id} AND status = 'FAILED'
        RETURNING topic, message_key`
      if (resolved === undefined) return false
      yield* sql`UPDATE kpipe_outbox SET status = 'PENDING'
                 WHERE topic = ${resolved.topic} AND message_key = ${resolved.messageKey} AND status = 'HELD'`
      yield* sql`SELECT pg_notify(${channel}, ${status === "PENDING" ? "retry" : "skip"})`
      return true
    })))

export const retryFailed = (id: string) => resolveFailed(id, "PENDING").pipe(Effect.withSpan("OutboxRelay.retryFailed"))

export const skipFailed = (id: string) => resolveFailed(id, "SKIPPED").pipe(Effect.withSpan("OutboxRelay.skipFailed"))

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

/**
 * Deletes the sequence counters of keys with no row left to order (none pending, held or FAILED):
 * without it `kpipe_outbox_keys` keeps one row per key ever used. A key's next append then starts
 * again at `seq` 1, which keeps its order because no earlier row of it is left to publish (and `seq`
 * is unique among pending rows only; published rows keep theirs). The counters are locked first (an
 * append in progress holds its key's row, so it is skipped), and checked again by a second
 * statement: its newer snapshot sees the rows of any append that committed while the lock was being
 * taken.
 */
export const cleanupKeys = Effect.gen(function*() {
  const sql = yield* SqlClient
  // Each an index probe: the pending index by the key's shard, the FAILED and HELD indexes by the key.
  const idleKey = sql`
    NOT EXISTS (
      SELECT 1 FROM kpipe_outbox o
      WHERE o.shard = kpipe_outbox_shard(k.topic, k.message_key) AND o.topic = k.topic
        AND o.message_key = k.message_key AND o.status = 'PENDING'
    )
    AND NOT EXISTS (
      SELECT 1 FROM kpipe_outbox o WHERE o.topic = k.topic AND o.message_key = k.message_key AND o.status = 'FAILED'
    )
    AND NOT EXISTS (
      SELECT 1 FROM kpipe_outbox o WHERE o.topic = k.topic AND o.message_key = k.message_key AND o.status = 'HELD'
    )`
  let total = 0
  while (true) {
    const deleted = yield* sql.withTransaction(Effect.gen(function*() {
      const idle = yield* sql<{ topic: string; messageKey: string }>`
        SELECT topic, message_key FROM kpipe_outbox_keys k
        WHERE ${idleKey}
        LIMIT 5000
        FOR UPDATE SKIP LOCKED`
      if (idle.length === 0) return 0
      const gone = yield* sql`
        DELETE FROM kpipe_outbox_keys k
        USING unnest(${idle.map((r) => r.topic)}::text[], ${
        idle.map((r) => r.messageKey)
      }::text[]) AS c(topic, message_key)
        WHERE k.topic = c.topic AND k.message_key = c.message_key
          AND ${idleKey}
        RETURNING 1`
      return gone.length
    }))
    total += deleted
    if (deleted < 5000) return total
  }
}).pipe(Effect.withSpan("OutboxRelay.cleanupKeys"))
