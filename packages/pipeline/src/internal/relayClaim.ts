import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Producer } from "@kpipe/kafka"
import { type KafkaError, missingTopics, rejectsRecords } from "@kpipe/kafka/KafkaError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Tracer from "effect/Tracer"
import { defaultRetention, type RelayOptions, type RoundResult } from "../OutboxRelay.ts"
import { outboxShards } from "../PipelineMigrations.ts"
import { eventHeaders } from "./headers.ts"
import { failedTotal, publishedTotal } from "./metrics.ts"
import { pgText } from "./pgText.ts"

export interface ClaimedRow {
  readonly id: string
  readonly topic: string
  readonly messageKey: string
  readonly eventId: string
  readonly eventType: string
  readonly schemaVersion: number
  readonly payload: string
  readonly headers: Record<string, string>
}

const errorText = (error: unknown) => pgText((error instanceof Error ? error.message : String(error)).slice(0, 2000))

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
 * What a relay loop remembers between claims: topics found missing on the broker, and when. Their
 * rows are left out of claims until the topic is looked up again, so they hold back only their own
 * keys and never fill a claim that other keys are waiting for.
 */
export interface ClaimState {
  readonly missingTopics: Map<string, number>
}

export const makeState = (): ClaimState => ({ missingTopics: new Map() })

const recheckMissingTopicAfterMs = 10_000

/**
 * Up to `limit` shards with pending rows, from `start` round, locked (skipping those another relay
 * holds). A scalar subquery with LIMIT 1 is one index probe per shard whatever the statistics say;
 * written as EXISTS, a backlog the statistics had not seen yet was planned as a scan of every
 * pending row (80-170 ms per claim at 200,000 rows, against 1 ms).
 */
export const pendingShards = (sql: SqlClient, start: number, limit: number) =>
  sql<{ shard: number }>`
    SELECT s.shard FROM kpipe_outbox_shards s
    WHERE (SELECT true FROM kpipe_outbox o WHERE o.shard = s.shard AND o.status = 'PENDING' LIMIT 1)
    ORDER BY (s.shard + ${start}) % ${outboxShards}
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED`

/** Those of `shards` no other relay holds, locked. */
export const lockShards = (sql: SqlClient, shards: ReadonlyArray<number>) =>
  sql<{ shard: number }>`
    SELECT shard FROM kpipe_outbox_shards WHERE shard = ANY(${shards}::int[])
    FOR UPDATE SKIP LOCKED`

/**
 * The next `limit` pending rows of `shards`, each key's in `seq` order and none behind a FAILED row
 * of its key. Shard by shard, each an ordered scan of the pending index that stops at `limit`: the
 * outer LIMIT ends the loop once it has enough, so a claim reads about as many rows as it publishes.
 * The outer LIMIT takes a prefix of each shard's ordered rows (a key lives in one shard), which is all
 * the ordering needs. Written with `shard = ANY(...)` and one ORDER BY, it read and sorted every
 * pending row of the shards whenever the statistics had not seen the backlog (158 ms against 8 ms
 * per claim at 100,000 rows: the fault matrix's drains after a Kafka outage ran at 2,500 events/s).
 */
export const pendingRows = (
  sql: SqlClient,
  shards: ReadonlyArray<number>,
  skipTopics: ReadonlyArray<string>,
  limit: number
) =>
  // Named as the rows' fields in the statement: the client's name transform walked every field of a
  // claim's 1,000 rows and their headers (6 % of the relay's CPU draining a backlog).
  sql.withoutTransforms()<ClaimedRow>`
    SELECT r.* FROM unnest(${shards}::int[]) AS s(shard)
    CROSS JOIN LATERAL (
      SELECT o.id, o.topic, o.message_key AS "messageKey", o.event_id AS "eventId", o.event_type AS "eventType",
             o.schema_version AS "schemaVersion", o.payload::text AS payload, o.headers
      FROM kpipe_outbox o
      WHERE o.shard = s.shard AND o.status = 'PENDING'
        AND NOT (o.topic = ANY(${skipTopics}::text[]))
        AND NOT EXISTS (
          SELECT 1 FROM kpipe_outbox f
          WHERE f.topic = o.topic AND f.message_key = o.message_key AND f.status = 'FAILED'
        )
      ORDER BY o.topic, o.message_key, o.seq
      LIMIT ${limit}
    ) r
    LIMIT ${limit}`

/**
 * The rows of a key behind `failed`, just marked FAILED, out of the claims' way: its pending rows,
 * and a later row of it marked FAILED in the same claim (one that could not be encoded), so that
 * the key has one FAILED row, the one to retry or skip.
 */
const holdKey = (sql: SqlClient, failed: ClaimedRow) =>
  sql`UPDATE kpipe_outbox SET status = 'HELD'
      WHERE shard = kpipe_outbox_shard(${failed.topic}, ${failed.messageKey}) AND topic = ${failed.topic}
        AND message_key = ${failed.messageKey} AND status IN ('PENDING', 'FAILED') AND id <> ${failed.id}`

/**
 * Holds the rows appended behind a FAILED row since it was marked (a claim leaves them out, but reads
 * past them), and releases held rows whose key has no FAILED row left (one deleted by hand, or
 * retried by an instance that did not know of held rows yet). A FAILED row a retry or skip holds is
 * left for next time, as are rows a claim holds: waiting on them, with locks of other keys taken,
 * would deadlock with an operator's action on several rows.
 */
export const holdBehindFailed = Effect.flatMap(SqlClient, (sql) =>
  Effect.zipWith(
    sql<{ n: number }>`
      WITH behind AS (
        SELECT o.id FROM kpipe_outbox f
        JOIN kpipe_outbox o ON o.shard = f.shard AND o.topic = f.topic AND o.message_key = f.message_key
          AND o.status = 'PENDING'
        WHERE f.status = 'FAILED'
        FOR SHARE OF f SKIP LOCKED FOR UPDATE OF o SKIP LOCKED
      ), held AS (
        UPDATE kpipe_outbox SET status = 'HELD' WHERE id IN (SELECT id FROM behind) RETURNING 1
      )
      SELECT count(*)::int AS n FROM held`,
    // A key's FAILED row and its HELD rows appear, and go, in one transaction: a key seen holding
    // rows and no FAILED row has none.
    sql<{ n: number }>`
      WITH orphaned AS (
        SELECT o.id FROM kpipe_outbox o
        WHERE o.status = 'HELD' AND NOT EXISTS (
          SELECT 1 FROM kpipe_outbox f WHERE f.topic = o.topic AND f.message_key = o.message_key AND f.status = 'FAILED'
        )
        FOR UPDATE SKIP LOCKED
      ), released AS (
        UPDATE kpipe_outbox SET status = 'PENDING' WHERE id IN (SELECT id FROM orphaned) RETURNING 1
      )
      SELECT count(*)::int AS n FROM released`,
    ([held], [released]) => ({ held: held!.n, released: released!.n })
  ).pipe(Effect.withSpan("OutboxRelay.holdBehindFailed")))

export const shardsPerClaimOf = (options: RelayOptions) => options.shardsPerClaim ?? 16

const defaultMaxBatchBytes = 900_000
// A record's framing and the event headers the relay adds (id, type, schema version).
const recordOverhead = 150

const sizeOf = (row: ClaimedRow) => {
  let bytes = recordOverhead + Buffer.byteLength(row.payload) + Buffer.byteLength(row.messageKey)
  for (const name in row.headers) bytes += name.length + Buffer.byteLength(String(row.headers[name]))
  return bytes
}

/**
 * The first of `rows` that fit in `maxBytes` (at least one). A prefix of the claim is a prefix of
 * each key's rows, so the rest stay pending in order.
 */
export const upToBytes = (rows: ReadonlyArray<ClaimedRow>, maxBytes: number): ReadonlyArray<ClaimedRow> => {
  let bytes = 0
  for (let i = 0; i < rows.length; i++) {
    bytes += sizeOf(rows[i]!)
    if (bytes > maxBytes && i > 0) return rows.slice(0, i)
  }
  return rows
}

/** Why `row` cannot be sent, if it cannot: Kafka headers are strings (a writer other than `Outbox.append` may put anything in the column). */
export const malformation = (row: ClaimedRow): string | undefined => {
  const headers: unknown = row.headers
  if (typeof headers !== "object" || headers === null || Array.isArray(headers)) {
    return `Outbox row's headers must be a JSON object of strings, not ${JSON.stringify(headers)}`
  }
  for (const name in headers) {
    const value: unknown = (headers as Record<string, unknown>)[name]
    if (typeof value !== "string") return `Outbox row's header "${name}" must be a string, not ${JSON.stringify(value)}`
  }
  return undefined
}

/**
 * `rows` split into those to send and the malformed ones, which can never be sent: each key's rows up
 * to its first malformed one are sent, that one fails, and its key's later rows stay pending behind it.
 */
export const withoutMalformed = (rows: ReadonlyArray<ClaimedRow>) => {
  const sendable: Array<ClaimedRow> = []
  const malformed: Array<{ readonly row: ClaimedRow; readonly reason: string }> = []
  const stopped = new Set<string>()
  const keyOf = (row: ClaimedRow) => `${row.topic}\u001f${row.messageKey}`
  for (const row of rows) {
    // Almost always none is malformed: no key is built then.
    if (stopped.size > 0 && stopped.has(keyOf(row))) continue
    const reason = malformation(row)
    if (reason === undefined) {
      sendable.push(row)
    } else {
      malformed.push({ row, reason })
      stopped.add(keyOf(row))
    }
  }
  return { sendable, malformed }
}

/** What a claim did, and which shards it held while it did. */
export interface Claimed {
  readonly result: RoundResult
  readonly locked: ReadonlyArray<number>
  /**
   * It took as many rows as a claim may (its shards may have more), or, looking at every shard, as
   * many shards as a claim may (other shards may have rows).
   */
  readonly filled: boolean
}

/**
 * One claim: lock up to `shardsPerClaim` shards that have pending rows (skipping shards another
 * relay holds), publish their next rows in key order with one producer call, mark them published
 * with one statement, commit. Returns what happened, for the loop's pacing.
 */
export const publishOnce = (
  options: RelayOptions,
  state: ClaimState = makeState()
): Effect.Effect<RoundResult, SqlError, SqlClient | Producer.Producer> =>
  Effect.map(claimOnce(options, state, undefined), (claimed) => claimed.result)

/**
 * A claim of `target`'s shards (those no other relay holds), or, when undefined, of up to
 * `shardsPerClaim` shards found to have pending rows.
 */
export const claimOnce = (
  options: RelayOptions,
  state: ClaimState,
  target: ReadonlyArray<number> | undefined
): Effect.Effect<Claimed, SqlError, SqlClient | Producer.Producer> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const producer = yield* Producer.Producer
    const batchSize = options.batchSize ?? 1000
    const shardsPerClaim = shardsPerClaimOf(options)
    const start = Math.floor(Math.random() * outboxShards)
    const now = Date.now()
    for (const [topic, at] of state.missingTopics) {
      if (now - at >= recheckMissingTopicAfterMs) state.missingTopics.delete(topic)
    }
    const skipTopics = [...state.missingTopics.keys()]
    // An update writes a new version of the row and an entry in three indexes; a delete only marks
    // it: 8-11 ms against 1 ms per 1,000 rows, the largest part of a claim's time.
    const keepPublished = Duration.toMillis(options.retention ?? defaultRetention) > 0
    let locked: ReadonlyArray<number> = []
    let filled = false
    const result = yield* sql.withTransaction(Effect.gen(function*(): Effect.fn.Return<RoundResult, SqlError> {
      const shards = target === undefined
        ? yield* pendingShards(sql, start, shardsPerClaim)
        : yield* lockShards(sql, target)
      if (shards.length === 0) return { _tag: "Idle" } as const
      locked = shards.map((s) => s.shard)
      const pending = yield* pendingRows(sql, locked, skipTopics, batchSize)
      if (pending.length === 0) return { _tag: "Idle" } as const
      const claimed = upToBytes(pending, options.maxBatchBytes ?? defaultMaxBatchBytes)
      filled = claimed.length < pending.length || claimed.length >= batchSize ||
        (target === undefined && locked.length >= shardsPerClaim)

      const markPublished = (ids: ReadonlyArray<string>) =>
        ids.length === 0 ? Effect.void : Effect.zipRight(
          keepPublished
            ? sql`UPDATE kpipe_outbox
                  SET status = 'PUBLISHED', published_at = now(), attempts = attempts + 1, last_error = NULL
                  WHERE id = ANY(${ids}::bigint[])`
            : sql`DELETE FROM kpipe_outbox WHERE id = ANY(${ids}::bigint[])`,
          Metric.incrementBy(publishedTotal, ids.length)
        )
      const recordError = (ids: ReadonlyArray<string>, error: KafkaError) =>
        sql`UPDATE kpipe_outbox SET attempts = attempts + 1, last_error = ${errorText(error)}
            WHERE id = ANY(${ids}::bigint[])`

      const sendAll = (batch: ReadonlyArray<ClaimedRow>) =>
        producer.sendBatch(byTopic(batch)).pipe(
          Effect.withSpan("OutboxRelay.send", {
            kind: "producer",
            links: linksOf(batch),
            attributes: { "messaging.batch.message_count": batch.length }
          }),
          Effect.either
        )

      const markFailed = (row: ClaimedRow, error: unknown) =>
        Effect.all([
          sql`UPDATE kpipe_outbox SET status = 'FAILED', attempts = attempts + 1, last_error = ${errorText(error)}
              WHERE id = ${row.id}`,
          holdKey(sql, row),
          Metric.increment(failedTotal),
          Effect.logError("Outbox row can never be published; its key waits behind it", error).pipe(
            Effect.annotateLogs({ outboxId: row.id, topic: row.topic, key: row.messageKey })
          )
        ], { discard: true })

      // Left in the claim, a row kafkajs cannot encode would fail the whole send as if the broker were
      // away, for every key in it, claim after claim.
      const { malformed, sendable: rows } = withoutMalformed(claimed)
      for (const { reason, row } of malformed) yield* markFailed(row, reason)
      if (rows.length === 0) return { _tag: "Published", count: 0 } as const

      let sending = rows
      let sent = yield* sendAll(sending)
      const missing = sent._tag === "Left" ? missingTopics(sent.left) : []
      if (sent._tag === "Left" && missing.length > 0) {
        // Not the records' fault and not a passing fault: the rows wait (their keys with them) until
        // the topic exists; every other key goes on.
        const absent = new Set(missing)
        const waiting = sending.filter((row) => absent.has(row.topic))
        for (const topic of missing) state.missingTopics.set(topic, Date.now())
        yield* recordError(waiting.map((row) => row.id), sent.left)
        yield* Effect.logError("Outbox rows wait for topics that do not exist; their keys are held back", sent.left)
          .pipe(
            Effect.annotateLogs({
              topics: missing.join(","),
              rows: waiting.length,
              keys: new Set(waiting.map((row) => `${row.topic}/${row.messageKey}`)).size
            })
          )
        sending = sending.filter((row) => !absent.has(row.topic))
        if (sending.length === 0) return { _tag: "Published", count: 0 } as const
        sent = yield* sendAll(sending)
      }
      if (sent._tag === "Right") {
        yield* markPublished(sending.map((row) => row.id))
        return { _tag: "Published", count: sending.length } as const
      }
      // The broker away, a connection lost, retries exhausted: nothing is wrong with the rows.
      if (!rejectsRecords(sent.left)) {
        yield* recordError(sending.map((row) => row.id), sent.left)
        return { _tag: "Blocked", error: sent.left } as const
      }
      // The broker rejected some record itself. Send one by one to find it: it is marked FAILED and
      // the rest of its key stays pending behind it; other keys go on.
      const published: Array<string> = []
      const failedKeys = new Set<string>()
      for (const row of sending) {
        const keyId = `${row.topic}\u001f${row.messageKey}`
        if (failedKeys.has(keyId)) continue
        const single = yield* Effect.either(producer.send({ topic: row.topic, messages: [toMessage(row)] }))
        if (single._tag === "Right") {
          published.push(row.id)
        } else if (!rejectsRecords(single.left)) {
          yield* markPublished(published)
          yield* recordError([row.id], single.left)
          return { _tag: "Blocked", error: single.left } as const
        } else {
          failedKeys.add(keyId)
          yield* markFailed(row, single.left)
        }
      }
      yield* markPublished(published)
      return { _tag: "Published", count: published.length } as const
    }))
    return { result, locked, filled }
  }).pipe(Effect.withSpan("OutboxRelay.publishOnce", { attributes: { "kpipe.claim": target ? "notified" : "all" } }))
