import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Producer } from "@kpipe/kafka"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createHash } from "node:crypto"
import { eventIdHeader, traceHeaders } from "./internal/headers.ts"
import * as Audit from "./internal/redriveAudit.ts"
import { columns, decodePayload, type FailureRow, redriveHeaders, traceIdOf, where } from "./internal/redriveQuery.ts"
import * as RedriveRun from "./internal/redriveRun.ts"
import * as OutboxRelay from "./OutboxRelay.ts"
import { orderPosition } from "./PipelineMigrations.ts"

export const FailureStatus = Schema.Literal("OPEN", "REDRIVEN", "RESOLVED", "PARKED")
export type FailureStatus = typeof FailureStatus.Type

/** Which failures an action is about; every field narrows it. */
export const Selection = Schema.Struct({
  ids: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  topic: Schema.optionalWith(Schema.String, { exact: true }),
  consumerGroup: Schema.optionalWith(Schema.String, { exact: true }),
  errorTag: Schema.optionalWith(Schema.String, { exact: true }),
  eventType: Schema.optionalWith(Schema.String, { exact: true }),
  eventId: Schema.optionalWith(Schema.String, { exact: true }),
  key: Schema.optionalWith(Schema.String, { exact: true }),
  from: Schema.optionalWith(Schema.DateTimeUtc, { exact: true }),
  to: Schema.optionalWith(Schema.DateTimeUtc, { exact: true }),
  status: Schema.optionalWith(FailureStatus, { exact: true })
})
export type Selection = typeof Selection.Type

const encodeSelection = Schema.encodeSync(Selection)

export interface FailureGroup {
  readonly topic: string
  readonly consumerGroup: string
  readonly errorTag: string
  readonly eventType: string | null
  readonly count: number
  readonly firstSeen: Date
  readonly lastSeen: Date
  readonly sampleId: string
  readonly sampleError: string
}

export interface FailureSummary {
  readonly id: string
  readonly topic: string
  readonly consumerGroup: string
  readonly partition: number
  readonly offset: string
  readonly key: string | null
  readonly eventId: string | null
  readonly eventType: string | null
  readonly errorTag: string
  readonly errorMessage: string
  readonly attempts: number
  readonly status: FailureStatus
  readonly createdAt: Date
}

export interface FailureDetail extends FailureSummary {
  readonly payload:
    | { readonly _tag: "Json"; readonly value: unknown }
    | { readonly _tag: "Raw"; readonly base64: string }
    | { readonly _tag: "Empty" }
  readonly headers: Record<string, string>
  readonly errorStack: string | null
  readonly firstAttemptAt: Date
  readonly lastAttemptAt: Date
  readonly deadLetterTopic: string
  readonly statusReason: string | null
  readonly traceId: string | undefined
  /** Every audited action that touched this failure, oldest first. */
  readonly history: ReadonlyArray<
    { readonly operationId: string; readonly action: string; readonly outcome: string; readonly at: Date }
  >
}

export interface DryRun {
  /** The audit row of the dry-run; `redrive({ dryRunId })` redrives exactly these failures. */
  readonly dryRunId: string
  readonly count: number
  readonly targetTopics: ReadonlyArray<{ readonly topic: string; readonly count: number }>
  /** Failures recorded after this moment are not part of the selection. */
  readonly cutoff: Date
}

export interface RedriveOptions {
  readonly actor: string
  /** Records per transaction and producer call (default 100, at most the rate and `maxBatchSize`). */
  readonly batchSize?: number | undefined
  /** Most records redriven per second. */
  readonly ratePerSecond?: number | undefined
  /** Redrive this many first, wait until they are applied or failed again, and stop if any failed again. */
  readonly canary?: number | undefined
  readonly canaryTimeout?: Duration.DurationInput | undefined
  /** Refuse to start when the selection no longer has this many failures (the dry-run's count). */
  readonly expectedCount?: number | undefined
}

export interface Progress {
  readonly phase: "starting" | "canary" | "waiting-canary" | "bulk" | "done"
  readonly total: number
  readonly redriven: number
  readonly skipped: number
  readonly held: number
  readonly canary?: { readonly size: number; readonly applied: number; readonly failedAgain: number } | undefined
}

export interface RedriveResult {
  readonly operationId: string
  readonly status: "SUCCEEDED" | "STOPPED" | "CANCELLED" | "FAILED"
  readonly total: number
  readonly redriven: number
  /** Failures that were no longer OPEN when their batch ran (redriven or parked meanwhile). */
  readonly skipped: number
  /** Failures left OPEN because an earlier failure of their key is still OPEN or PARKED outside the selection. */
  readonly held: number
  readonly canary?: Progress["canary"]
  readonly reason?: string | undefined
}

export interface Operation {
  readonly operationId: string
  readonly dryRun: DryRun
  readonly progress: SubscriptionRef.SubscriptionRef<Progress>
  /** Stops after the current batch; the batches already sent stay redriven. */
  readonly cancel: Effect.Effect<void>
  readonly await: Effect.Effect<RedriveResult>
}

/** The selection changed between the dry-run and the redrive. */
export class SelectionChanged extends Data.TaggedError("SelectionChanged")<{
  readonly expected: number
  readonly actual: number
}> {
  override get message() {
    return `The selection has ${this.actual} failures, ${this.expected} were expected`
  }
}

export class NotFound extends Data.TaggedError("NotFound")<{ readonly what: string; readonly id: string }> {
  override get message() {
    return `No ${this.what} ${this.id}`
  }
}

const summary = (row: FailureRow): FailureSummary => ({
  id: row.id,
  topic: row.topic,
  consumerGroup: row.consumerGroup,
  partition: row.partition,
  offset: row.offset,
  key: row.messageKey?.toString("utf8") ?? null,
  eventId: row.eventId,
  eventType: row.eventType,
  errorTag: row.errorTag,
  errorMessage: row.errorMessage,
  attempts: row.attempts,
  status: row.status,
  createdAt: row.createdAt
})

/** Failures grouped by fingerprint (topic, consumer group, error tag, event type), most recent first. */
export const groups = Effect.fn("Redrive.groups")(function*(selection: Selection = {}) {
  const sql = yield* SqlClient
  return yield* sql<FailureGroup>`
    SELECT topic, consumer_group, error_tag, event_type, count(*)::int AS count,
      min(created_at) AS first_seen, max(created_at) AS last_seen, max(id)::text AS sample_id,
      (array_agg(error_message ORDER BY id DESC))[1] AS sample_error
    FROM kpipe_failed_events WHERE ${where(sql, selection, selection.status ?? "OPEN")}
    GROUP BY topic, consumer_group, error_tag, event_type
    ORDER BY last_seen DESC`
})

export const list = Effect.fn("Redrive.list")(function*(selection: Selection = {}, limit = 100) {
  const sql = yield* SqlClient
  const rows = yield* sql<FailureRow>`
    SELECT ${columns(sql)} FROM kpipe_failed_events WHERE ${where(sql, selection, selection.status ?? "OPEN")}
    ORDER BY id DESC LIMIT ${limit}`
  return rows.map(summary)
})

/** One failure in full: payload (decoded when it is JSON), headers, error, attempts, trace id, history. */
export const inspect = Effect.fn("Redrive.inspect")(function*(id: string) {
  const sql = yield* SqlClient
  const [row] = yield* sql<FailureRow>`SELECT ${columns(sql)} FROM kpipe_failed_events WHERE id = ${id}`
  if (row === undefined) return yield* new NotFound({ what: "failure", id })
  const history = yield* sql<{ operationId: string; action: string; outcome: string; at: Date }>`
    SELECT a.id::text AS operation_id, a.action, e.outcome, e.at
    FROM kpipe_ops_audit_events e JOIN kpipe_ops_audit a ON a.id = e.audit_id
    WHERE e.failure_id = ${id} ORDER BY e.id`
  const detail: FailureDetail = {
    ...summary(row),
    payload: decodePayload(row.payload),
    headers: row.headers,
    errorStack: row.errorStack,
    firstAttemptAt: row.firstAttemptAt,
    lastAttemptAt: row.lastAttemptAt,
    deadLetterTopic: row.deadLetterTopic,
    statusReason: row.statusReason,
    traceId: traceIdOf(row.headers),
    history
  }
  return detail
})

/** Freezes the OPEN failures of a selection: their ids go into the audit row, so a redrive of this dry-run takes exactly them. */
const snapshot = (selection: Selection, actor: string, action: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      const [{ cutoff }] = (yield* sql<{ cutoff: Date }>`SELECT clock_timestamp() AS cutoff`) as [{ cutoff: Date }]
      const rows = yield* sql<{ id: string; topic: string; eventId: string | null }>`
        SELECT id::text AS id, topic, event_id FROM kpipe_failed_events
        WHERE ${where(sql, selection, "OPEN", cutoff)}
        ORDER BY topic, message_key, ${sql.literal(orderPosition("kpipe_failed_events"))}`
      const counts = new Map<string, number>()
      for (const row of rows) counts.set(row.topic, (counts.get(row.topic) ?? 0) + 1)
      const targetTopics = [...counts].map(([topic, count]) => ({ topic, count }))
      const dryRunId = yield* Audit.open(sql, {
        action,
        actor,
        selection: encodeSelection(selection),
        cutoff,
        dryRun: { count: rows.length, targetTopics }
      })
      yield* Audit.events(
        sql,
        dryRunId,
        rows.map((r) => ({ failureId: r.id, eventId: r.eventId, outcome: "SELECTED" }))
      )
      yield* Audit.close(sql, dryRunId, "SUCCEEDED", { count: rows.length })
      const dryRun: DryRun = { dryRunId, count: rows.length, targetTopics, cutoff }
      return { dryRun, ids: rows.map((r) => r.id) }
    }))
  })

/** What a redrive of the selection would do, with a cutoff taken now; audited. */
export const dryRun = Effect.fn("Redrive.dryRun")(function*(selection: Selection, actor: string) {
  return (yield* snapshot(selection, actor, "redrive-dry-run")).dryRun
})

/**
 * Starts redriving a selection (a fresh snapshot) or a dry-run's failures back to their original
 * topics, in the background of the caller's scope. Each failure is redriven at most once.
 */
export const start = Effect.fn("Redrive.start")(function*(
  source: { readonly selection: Selection } | { readonly dryRunId: string },
  options: RedriveOptions
) {
  const sql = yield* SqlClient
  let frozen: { readonly dryRun: DryRun; readonly ids: ReadonlyArray<string>; readonly open: number }
  if ("dryRunId" in source) {
    const [audit] = yield* sql<{ cutoff: Date; dryRun: { count: number; targetTopics: DryRun["targetTopics"] } }>`
      SELECT cutoff, dry_run FROM kpipe_ops_audit WHERE id = ${source.dryRunId} AND action = 'redrive-dry-run'`
    if (audit === undefined) return yield* new NotFound({ what: "dry-run", id: source.dryRunId })
    const ids = yield* sql<{ failureId: string; open: boolean }>`
      SELECT e.failure_id::text AS failure_id, f.status = 'OPEN' AS open FROM kpipe_ops_audit_events e
      JOIN kpipe_failed_events f ON f.id = e.failure_id
      WHERE e.audit_id = ${source.dryRunId} AND e.outcome = 'SELECTED'
      ORDER BY f.topic, f.message_key, ${sql.literal(orderPosition("f"))}`
    frozen = {
      dryRun: {
        dryRunId: source.dryRunId,
        count: audit.dryRun.count,
        targetTopics: audit.dryRun.targetTopics,
        cutoff: audit.cutoff
      },
      ids: ids.map((r) => r.failureId),
      // Parked, resolved or redriven since the dry-run: the count the operator saw has moved.
      open: ids.filter((r) => r.open).length
    }
  } else {
    const snapshotted = yield* snapshot(source.selection, options.actor, "redrive-dry-run")
    frozen = { ...snapshotted, open: snapshotted.ids.length }
  }
  if (options.expectedCount !== undefined && options.expectedCount !== frozen.open) {
    return yield* new SelectionChanged({ expected: options.expectedCount, actual: frozen.open })
  }
  const operationId = yield* Audit.open(sql, {
    action: "redrive",
    actor: options.actor,
    selection: "dryRunId" in source ? { dryRunId: source.dryRunId } : encodeSelection(source.selection),
    cutoff: frozen.dryRun.cutoff,
    dryRun: frozen.dryRun,
    options: {
      ...options,
      canaryTimeout: options.canaryTimeout === undefined ? undefined : String(options.canaryTimeout)
    }
  })
  const progress = yield* SubscriptionRef.make<Progress>({
    phase: "starting",
    total: frozen.ids.length,
    redriven: 0,
    skipped: 0,
    held: 0
  })
  const cancelled = yield* Ref.make(false)
  const fiber = yield* Effect.forkScoped(RedriveRun.run(operationId, frozen.ids, options, progress, cancelled))
  const operation: Operation = {
    operationId,
    dryRun: frozen.dryRun,
    progress,
    cancel: Ref.set(cancelled, true),
    await: Fiber.join(fiber)
  }
  return operation
})

/** The original topics a dry-run's failures go back to. */
export const dryRunTopics = Effect.fn("Redrive.dryRunTopics")(function*(dryRunId: string) {
  const sql = yield* SqlClient
  const rows = yield* sql<{ topic: string }>`
    SELECT DISTINCT f.topic FROM kpipe_ops_audit_events e JOIN kpipe_failed_events f ON f.id = e.failure_id
    WHERE e.audit_id = ${dryRunId} AND e.outcome = 'SELECTED' ORDER BY f.topic`
  return rows.map((r) => r.topic)
})

/** `start`, then waits for the result. */
export const redrive = (
  source: { readonly selection: Selection } | { readonly dryRunId: string },
  options: RedriveOptions
): Effect.Effect<RedriveResult, SqlError | NotFound | SelectionChanged, SqlClient | Producer.Producer> =>
  Effect.scoped(Effect.flatMap(start(source, options), (operation) => operation.await)).pipe(
    Effect.withSpan("Redrive.redrive")
  )

/** Asks a running redrive (in any process) to stop after its current batch. */
export const requestCancel = Effect.fn("Redrive.requestCancel")(function*(operationId: string) {
  const sql = yield* SqlClient
  const rows = yield* sql`
    UPDATE kpipe_ops_audit SET cancel_requested = true WHERE id = ${operationId} AND status = 'RUNNING' RETURNING id`
  return rows.length === 1
})

const moveStatus = (
  action: string,
  from: FailureStatus,
  to: FailureStatus,
  selection: Selection,
  actor: string,
  reason: string | null
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      const operationId = yield* Audit.open(sql, {
        action,
        actor,
        selection: encodeSelection(selection),
        options: { reason }
      })
      const rows = yield* sql<{ id: string; eventId: string | null }>`
        UPDATE kpipe_failed_events SET status = ${to}, status_reason = ${reason}, status_changed_at = clock_timestamp(),
          operation_id = ${operationId}
        WHERE ${where(sql, selection, from)}
        RETURNING id::text AS id, event_id`
      yield* Audit.events(sql, operationId, rows.map((r) => ({ failureId: r.id, eventId: r.eventId, outcome: to })))
      yield* Audit.close(sql, operationId, "SUCCEEDED", { count: rows.length })
      return { operationId, count: rows.length }
    }))
  })

/** Archives the OPEN failures of a selection with a reason: they leave the groups and no redrive takes them. */
export const park = Effect.fn("Redrive.park")(function*(selection: Selection, actor: string, reason: string) {
  return yield* moveStatus("park", "OPEN", "PARKED", selection, actor, reason)
})

/** Makes parked failures of a selection OPEN again. */
export const restore = Effect.fn("Redrive.restore")(function*(selection: Selection, actor: string) {
  return yield* moveStatus("restore", "PARKED", "OPEN", selection, actor, null)
})

/** An edited redrive was asked for without its explicit switch, or the payload is not an event object. */
export class EditRefused extends Data.TaggedError("EditRefused")<{ readonly reason: string }> {
  override get message() {
    return `Edit and redrive refused: ${this.reason}`
  }
}

export const editedFromHeader = "kpipe-edited-from-event-id"

/**
 * The event id of a failure's edited copy: the same for every attempt to edit that failure. The copy
 * is sent before the transaction that resolves the failure commits; when that transaction fails
 * after the send, the failure stays OPEN and the copy may already be applied, and editing it again
 * sends a copy with the same id, which the groups that applied the first take as a duplicate.
 */
export const editedEventId = (row: Pick<FailureRow, "id" | "consumerGroup" | "topic" | "partition" | "offset">) => {
  const hex = createHash("sha256")
    .update(
      `kpipe-edit\u001f${row.consumerGroup}\u001f${row.topic}\u001f${row.partition}\u001f${row.offset}\u001f${row.id}`
    )
    .digest("hex")
  // Laid out as a UUID (version 8: custom), like the ids producers give events.
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${
    hex.slice(20, 32)
  }`
}

/**
 * Sends an edited copy of an OPEN failure's event to its original topic as a NEW event (a new event
 * id, `editedEventId`, linked to the old one by the `kpipe-edited-from-event-id` header) and resolves
 * the failure. Only with `allowEdit: true`: an edited event is no longer what its producer wrote.
 */
export const editAndRedrive = Effect.fn("Redrive.editAndRedrive")(function*(
  failureId: string,
  payload: unknown,
  options: { readonly actor: string; readonly allowEdit: boolean }
) {
  if (options.allowEdit !== true) return yield* new EditRefused({ reason: "allowEdit is not set" })
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    return yield* new EditRefused({ reason: "the payload must be a JSON object" })
  }
  const sql = yield* SqlClient
  const producer = yield* Producer.Producer
  return yield* sql.withTransaction(Effect.gen(function*() {
    const [row] = yield* sql<FailureRow>`
      SELECT ${columns(sql)} FROM kpipe_failed_events WHERE id = ${failureId} AND status = 'OPEN' FOR UPDATE`
    if (row === undefined) return yield* new NotFound({ what: "OPEN failure", id: failureId })
    const eventId = editedEventId(row)
    const operationId = yield* Audit.open(sql, {
      action: "edit-and-redrive",
      actor: options.actor,
      selection: { ids: [failureId] }
    })
    yield* sql`
      UPDATE kpipe_failed_events SET status = 'RESOLVED', status_reason = ${`edited and redriven as ${eventId}`},
        status_changed_at = clock_timestamp(), operation_id = ${operationId}
      WHERE id = ${failureId}`
    const trace = yield* traceHeaders
    yield* producer.send({
      topic: row.topic,
      messages: [{
        key: row.messageKey,
        value: JSON.stringify({ ...payload, eventId }),
        headers: {
          ...redriveHeaders(row.headers),
          ...trace,
          [eventIdHeader]: eventId,
          [editedFromHeader]: row.eventId ?? "",
          [RedriveRun.redrivenFromHeader]: row.id,
          [RedriveRun.redriveOperationHeader]: operationId
        }
      }]
    })
    yield* Audit.events(sql, operationId, [{
      failureId: row.id,
      eventId: row.eventId,
      outcome: "EDITED",
      detail: `new event ${eventId}`
    }])
    yield* Audit.close(sql, operationId, "SUCCEEDED", { eventId })
    return { operationId, eventId }
  }))
})

export interface AuditEntry {
  readonly id: string
  readonly action: string
  readonly actor: string
  readonly startedAt: Date
  readonly finishedAt: Date | null
  readonly selection: unknown
  readonly cutoff: Date | null
  readonly dryRun: unknown
  readonly options: unknown
  readonly status: string
  readonly progress: unknown
  readonly result: unknown
}

/** The audit log, newest first. */
export const auditLog = Effect.fn("Redrive.auditLog")(function*(limit = 50) {
  const sql = yield* SqlClient
  return yield* sql<AuditEntry>`
    SELECT id::text AS id, action, actor, started_at, finished_at, selection, cutoff, dry_run, options, status,
      progress, result
    FROM kpipe_ops_audit ORDER BY id DESC LIMIT ${limit}`
})

/** One audited action. */
export const operation = Effect.fn("Redrive.operation")(function*(operationId: string) {
  const sql = yield* SqlClient
  const [entry] = yield* sql<AuditEntry>`
    SELECT id::text AS id, action, actor, started_at, finished_at, selection, cutoff, dry_run, options, status,
      progress, result
    FROM kpipe_ops_audit WHERE id = ${operationId}`
  if (entry === undefined) return yield* new NotFound({ what: "operation", id: operationId })
  return entry
})

export interface Health {
  readonly outboxPending: number
  readonly outboxFailed: number
  readonly oldestPendingSeconds: number | null
  readonly openFailures: number
  readonly deadLettersLast5m: number
  readonly deadLettersLast1h: number
}

/** The numbers an operator watches: outbox backlog and its age, open failures, dead-letter inflow. */
export const health = Effect.fn("Redrive.health")(function*() {
  const sql = yield* SqlClient
  const stats = yield* OutboxRelay.stats
  const [row] = yield* sql<{ open: number; last5m: number; last1h: number }>`
    SELECT count(*) FILTER (WHERE status = 'OPEN')::int AS open,
      count(*) FILTER (WHERE created_at > now() - interval '5 minutes')::int AS last5m,
      count(*) FILTER (WHERE created_at > now() - interval '1 hour')::int AS last1h
    FROM kpipe_failed_events`
  const result: Health = {
    outboxPending: stats.pending,
    outboxFailed: stats.failed,
    oldestPendingSeconds: Option.getOrNull(Option.map(stats.oldestPendingAge, Duration.toSeconds)),
    openFailures: row!.open,
    deadLettersLast5m: row!.last5m,
    deadLettersLast1h: row!.last1h
  }
  return result
})

/** The per-event outcomes of one audited action. */
export const auditEvents = Effect.fn("Redrive.auditEvents")(function*(operationId: string, limit?: number) {
  const sql = yield* SqlClient
  return yield* sql<
    {
      failureId: string | null
      outboxId: string | null
      eventId: string | null
      outcome: string
      detail: string | null
      at: Date
    }
  >`
    SELECT failure_id::text AS failure_id, outbox_id::text AS outbox_id, event_id, outcome, detail, at
    FROM kpipe_ops_audit_events WHERE audit_id = ${operationId} ORDER BY id
    ${limit === undefined ? sql`` : sql`LIMIT ${limit}`}`
})

export interface FailedOutboxRow {
  readonly id: string
  readonly topic: string
  readonly messageKey: string
  readonly eventId: string
  readonly eventType: string
  readonly attempts: number
  readonly lastError: string | null
  readonly createdAt: Date
  /** Rows of its key waiting behind it (held or pending): a retry or skip lets them go. */
  readonly waiting: number
}

/** FAILED outbox rows, oldest first. */
export const outboxFailed = Effect.fn("Redrive.outboxFailed")(function*(limit = 100) {
  const sql = yield* SqlClient
  return yield* sql<FailedOutboxRow>`
    SELECT f.id::text AS id, f.topic, f.message_key, f.event_id, f.event_type, f.attempts, f.last_error, f.created_at,
      (SELECT count(*)::int FROM kpipe_outbox w WHERE w.topic = f.topic AND w.message_key = f.message_key
         AND w.status = 'HELD')
      + (SELECT count(*)::int FROM kpipe_outbox w WHERE w.shard = f.shard AND w.topic = f.topic
         AND w.message_key = f.message_key AND w.status = 'PENDING') AS waiting
    FROM kpipe_outbox f WHERE f.status = 'FAILED' ORDER BY f.id LIMIT ${limit}`
})

const outboxAction = (action: "outbox-retry" | "outbox-skip", ids: ReadonlyArray<string>, actor: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      const operationId = yield* Audit.open(sql, { action, actor, selection: { ids } })
      const outcomes = yield* Effect.forEach(ids, (id) =>
        Effect.map(
          action === "outbox-retry" ? OutboxRelay.retryFailed(id) : OutboxRelay.skipFailed(id),
          (done) => ({
            outboxId: id,
            outcome: done ? (action === "outbox-retry" ? "PENDING" : "SKIPPED") : "NOT_FAILED"
          })
        ))
      yield* Audit.events(sql, operationId, outcomes)
      const count = outcomes.filter((o) => o.outcome !== "NOT_FAILED").length
      yield* Audit.close(sql, operationId, "SUCCEEDED", { count })
      return { operationId, count }
    }))
  })

/** Sends FAILED outbox rows again; audited. */
export const outboxRetry = Effect.fn("Redrive.outboxRetry")(function*(ids: ReadonlyArray<string>, actor: string) {
  return yield* outboxAction("outbox-retry", ids, actor)
})

/** Gives up on FAILED outbox rows; audited. */
export const outboxSkip = Effect.fn("Redrive.outboxSkip")(function*(ids: ReadonlyArray<string>, actor: string) {
  return yield* outboxAction("outbox-skip", ids, actor)
})

export { maxBatchSize, redrivenFromHeader, redriveOperationHeader } from "./internal/redriveRun.ts"
