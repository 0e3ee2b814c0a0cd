import type { SqlClient } from "@effect/sql/SqlClient"
import type { Consumer } from "@kpipe/kafka"
import * as Effect from "effect/Effect"

/**
 * Claims `(group, event id)` for each distinct event id of a run of one partition's records (the
 * first record of an id gives its offset); returns the ids that were new. `ON CONFLICT DO NOTHING`,
 * so a duplicate never aborts the transaction, and a concurrent claim of the same id waits for the
 * other transaction's end.
 */
export const claim = (
  sql: SqlClient,
  groupId: string,
  topic: string,
  run: ReadonlyArray<{ readonly record: Consumer.ConsumerRecord; readonly eventId: string }>
) => {
  const first = new Map<string, number>()
  run.forEach(({ eventId }, i) => {
    if (!first.has(eventId)) first.set(eventId, i)
  })
  const ids = [...first.keys()]
  return sql<{ eventId: string }>`
    INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome)
    SELECT ${groupId}, e.event_id, ${topic}, ${run[0]!.record.partition}, e.record_offset, 'APPLIED'
    FROM unnest(${ids}::text[], ${ids.map((id) => run[first.get(id)!]!.record.offset)}::bigint[])
      AS e(event_id, record_offset)
    ON CONFLICT DO NOTHING
    RETURNING event_id`
}

/**
 * Records the event as dead-lettered for the group, so a redelivery skips it; returns the group's
 * outcome for the event: `DEAD_LETTERED` (now or before), or `APPLIED` when it was applied meanwhile.
 */
export const markDeadLettered = (
  sql: SqlClient,
  groupId: string,
  topic: string,
  record: Consumer.ConsumerRecord,
  eventId: string
) =>
  sql<{ outcome: "APPLIED" | "DEAD_LETTERED" }>`
    WITH inserted AS (
      INSERT INTO kpipe_processed_events (consumer_group, event_id, topic, partition, "offset", outcome)
      VALUES (${groupId}, ${eventId}, ${topic}, ${record.partition}, ${record.offset}, 'DEAD_LETTERED')
      ON CONFLICT DO NOTHING
      RETURNING outcome
    )
    SELECT outcome FROM inserted
    UNION ALL
    SELECT outcome FROM kpipe_processed_events
    WHERE consumer_group = ${groupId} AND event_id = ${eventId} AND NOT EXISTS (SELECT 1 FROM inserted)`.pipe(
    // A conflicting claim that committed while the insert waited is not in this statement's
    // snapshot; the next statement sees it.
    Effect.flatMap((rows) =>
      rows.length > 0 ? Effect.succeed(rows[0]!.outcome) : sql<{ outcome: "APPLIED" | "DEAD_LETTERED" }>`
        SELECT outcome FROM kpipe_processed_events WHERE consumer_group = ${groupId} AND event_id = ${eventId}`.pipe(
        Effect.map((again) => again[0]?.outcome ?? "DEAD_LETTERED")
      )
    )
  )

/**
 * Deletes the group's claims on `topic` older than `olderThan`, a bounded chunk per statement;
 * returns how many. Safe once no record of those events can come back: past the topic's retention
 * plus its segment time (`Topic.readableFor`), the broker keeping a segment until its newest record
 * is past the retention.
 */
export const cleanup = (sql: SqlClient, groupId: string, topic: string, olderThanMs: number) =>
  Effect.gen(function*() {
    let total = 0
    while (true) {
      const [deleted] = yield* sql<{ n: number }>`
        WITH doomed AS (
          SELECT event_id FROM kpipe_processed_events
          WHERE consumer_group = ${groupId} AND topic = ${topic}
            AND processed_at < now() - make_interval(secs => ${olderThanMs / 1000})
          LIMIT 5000
        ), gone AS (
          DELETE FROM kpipe_processed_events p USING doomed d
          WHERE p.consumer_group = ${groupId} AND p.event_id = d.event_id RETURNING 1
        )
        SELECT count(*)::int AS n FROM gone`
      total += deleted!.n
      if (deleted!.n < 5000) return total
    }
  })
