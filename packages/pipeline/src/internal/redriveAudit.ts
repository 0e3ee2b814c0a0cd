import type { SqlClient } from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

export interface AuditEvent {
  readonly failureId?: string | undefined
  readonly outboxId?: string | undefined
  readonly eventId?: string | null | undefined
  readonly outcome: string
  readonly detail?: string | undefined
}

export const open = (
  sql: SqlClient,
  entry: {
    readonly action: string
    readonly actor: string
    readonly selection?: unknown
    readonly cutoff?: Date | undefined
    readonly dryRun?: unknown
    readonly options?: unknown
  }
) =>
  sql<{ id: string }>`
    INSERT INTO kpipe_ops_audit (action, actor, selection, cutoff, dry_run, options, status)
    VALUES (${entry.action}, ${entry.actor}, ${json(entry.selection)}::jsonb, ${entry.cutoff ?? null},
      ${json(entry.dryRun)}::jsonb, ${json(entry.options)}::jsonb, 'RUNNING')
    RETURNING id::text AS id`.pipe(Effect.map((rows) => rows[0]!.id))

export const events = (sql: SqlClient, auditId: string, rows: ReadonlyArray<AuditEvent>) =>
  rows.length === 0 ? Effect.void : sql`
    INSERT INTO kpipe_ops_audit_events (audit_id, failure_id, outbox_id, event_id, outcome, detail)
    SELECT ${auditId}, f, o, e, c, d
    FROM unnest(${rows.map((r) => r.failureId ?? null)}::bigint[], ${rows.map((r) => r.outboxId ?? null)}::bigint[],
      ${rows.map((r) => r.eventId ?? null)}::text[], ${rows.map((r) => r.outcome)}::text[],
      ${rows.map((r) => r.detail ?? null)}::text[]) AS t(f, o, e, c, d)`.pipe(Effect.asVoid)

export const progress = (sql: SqlClient, auditId: string, value: unknown) =>
  sql`UPDATE kpipe_ops_audit SET progress = ${json(value)}::jsonb WHERE id = ${auditId}`.pipe(Effect.asVoid)

export const close = (sql: SqlClient, auditId: string, status: string, result: unknown) =>
  sql`
    UPDATE kpipe_ops_audit SET status = ${status}, result = ${json(result)}::jsonb, finished_at = clock_timestamp()
    WHERE id = ${auditId} AND status = 'RUNNING'`.pipe(Effect.asVoid)

const json = (value: unknown) => value === undefined ? null : JSON.stringify(value)
