import { SqlClient, TransactionConnection } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import { traceHeaders } from "./internal/headers.ts"
import { hintPrefix } from "./internal/relayHints.ts"
import type * as Topic from "./Topic.ts"

/** The channel an append notifies on commit; the relay listens to it. */
export const channel = "kpipe_outbox"

interface Row {
  readonly topic: string
  readonly key: string
  readonly eventId: string
  readonly eventType: string
  readonly version: number
  readonly payload: string
}

const insert = Effect.fnUntraced(function*(rows: ReadonlyArray<Row>) {
  const sql = yield* SqlClient
  const headers = JSON.stringify(yield* traceHeaders)
  // One counter row per key, taken in key order so concurrent appends cannot deadlock. Its row lock
  // is held until commit, so a key's sequence numbers follow the commit order of its transactions.
  const counts = new Map<string, { topic: string; key: string; n: number }>()
  for (const row of rows) {
    const id = `${row.topic}\u001f${row.key}`
    const entry = counts.get(id)
    if (entry === undefined) counts.set(id, { topic: row.topic, key: row.key, n: 1 })
    else entry.n++
  }
  const sorted = [...counts.values()].sort((a, b) =>
    a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0
  )
  const reserved = yield* sql<{ topic: string; messageKey: string; lastSeq: string }>`
    INSERT INTO kpipe_outbox_keys (topic, message_key, last_seq)
    SELECT * FROM unnest(${sorted.map((c) => c.topic)}::text[], ${sorted.map((c) => c.key)}::text[], ${
    sorted.map((c) => c.n)
  }::bigint[])
    ON CONFLICT (topic, message_key) DO UPDATE SET last_seq = kpipe_outbox_keys.last_seq + EXCLUDED.last_seq
    RETURNING topic, message_key, last_seq`
  const next = new Map<string, bigint>()
  for (const r of reserved) {
    next.set(
      `${r.topic}\u001f${r.messageKey}`,
      BigInt(r.lastSeq) - BigInt(counts.get(`${r.topic}\u001f${r.messageKey}`)!.n) + 1n
    )
  }
  const seqs = rows.map((row) => {
    const id = `${row.topic}\u001f${row.key}`
    const seq = next.get(id)!
    next.set(id, seq + 1n)
    return seq.toString()
  })
  yield* sql`
    WITH appended AS (
      INSERT INTO kpipe_outbox (topic, message_key, seq, shard, event_id, event_type, schema_version, payload, headers)
      SELECT r.topic, r.message_key, r.seq, kpipe_outbox_shard(r.topic, r.message_key), r.event_id, r.event_type,
             r.schema_version, r.payload::jsonb, ${headers}::jsonb
      FROM unnest(
        ${rows.map((r) => r.topic)}::text[], ${rows.map((r) => r.key)}::text[], ${seqs}::bigint[],
        ${rows.map((r) => r.eventId)}::text[], ${rows.map((r) => r.eventType)}::text[],
        ${rows.map((r) => r.version)}::int[], ${rows.map((r) => r.payload)}::text[]
      ) AS r(topic, message_key, seq, event_id, event_type, schema_version, payload)
      RETURNING shard
    )
    SELECT pg_notify(${channel}, ${hintPrefix} || string_agg(DISTINCT shard::text, ',')) FROM appended
    HAVING count(*) > 0`
})

/**
 * Writes events to the outbox in the caller's SQL transaction: they are published if and only if
 * that transaction commits, and each key's events reach Kafka in the order their transactions
 * committed. Outside a transaction, the append runs in one of its own.
 */
export const append = <T extends Topic.Any>(
  topic: T,
  ...events: ReadonlyArray<Topic.EventOf<T>>
): Effect.Effect<void, ParseResult.ParseError | SqlError, SqlClient> =>
  Effect.gen(function*() {
    if (events.length === 0) return
    const rows = yield* Effect.forEach(events, (event) =>
      Effect.map(topic.encode(event), (payload): Row => ({
        topic: topic.name,
        key: topic.key(event),
        eventId: event.eventId,
        eventType: event.type,
        version: event.version,
        payload
      })))
    const inTransaction = Option.isSome(yield* Effect.serviceOption(TransactionConnection))
    if (inTransaction) return yield* insert(rows)
    const sql = yield* SqlClient
    return yield* sql.withTransaction(insert(rows))
  }).pipe(
    Effect.withSpan("Outbox.append", {
      kind: "producer",
      attributes: { "messaging.destination.name": topic.name, "messaging.batch.message_count": events.length }
    })
  )
