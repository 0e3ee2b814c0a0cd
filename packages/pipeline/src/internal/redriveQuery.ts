import type { SqlClient } from "@effect/sql/SqlClient"
import type { Fragment } from "@effect/sql/Statement"
import * as DateTime from "effect/DateTime"
import type { FailedEventRow } from "../DeadLetter.ts"
import type { FailureStatus, Selection } from "../Redrive.ts"

/** The failed-events rows a selection names, optionally only those recorded up to `cutoff`. */
export const where = (
  sql: SqlClient,
  selection: Selection,
  status: FailureStatus | undefined,
  cutoff?: Date
): Fragment => {
  const clauses: Array<Fragment> = []
  const wanted = status ?? selection.status
  if (wanted !== undefined) clauses.push(sql`status = ${wanted}`)
  if (selection.ids !== undefined) clauses.push(sql.in("id", selection.ids))
  if (selection.topic !== undefined) clauses.push(sql`topic = ${selection.topic}`)
  if (selection.consumerGroup !== undefined) clauses.push(sql`consumer_group = ${selection.consumerGroup}`)
  if (selection.errorTag !== undefined) clauses.push(sql`error_tag = ${selection.errorTag}`)
  if (selection.eventType !== undefined) clauses.push(sql`event_type = ${selection.eventType}`)
  if (selection.eventId !== undefined) clauses.push(sql`event_id = ${selection.eventId}`)
  if (selection.key !== undefined) clauses.push(sql`message_key = convert_to(${selection.key}, 'UTF8')`)
  if (selection.from !== undefined) clauses.push(sql`created_at >= ${DateTime.toDateUtc(selection.from)}`)
  if (selection.to !== undefined) clauses.push(sql`created_at < ${DateTime.toDateUtc(selection.to)}`)
  if (cutoff !== undefined) clauses.push(sql`created_at <= ${cutoff}`)
  return clauses.length === 0 ? sql`TRUE` : sql.and(clauses)
}

export interface FailureRow extends FailedEventRow {
  readonly id: string
  readonly status: FailureStatus
  readonly statusReason: string | null
  readonly createdAt: Date
  /** Its place in its key's order (`orderPosition`): its own, or, a redriven copy's, its origin's. */
  readonly orderPartition: number
  readonly orderOffset: string
}

export const columns = (sql: SqlClient) =>
  sql`id::text AS id, consumer_group, topic, partition, "offset"::text AS "offset", message_key, payload, headers,
    event_id, event_type, error_tag, error_message, error_stack, attempts, first_attempt_at, last_attempt_at,
    dead_letter_topic, status, status_reason, created_at, coalesce(order_partition, partition) AS order_partition,
    coalesce(order_offset, "offset")::text AS order_offset`

/** The trace id of a W3C `traceparent` header. */
export const traceIdOf = (headers: Record<string, string>): string | undefined => {
  const parts = headers["traceparent"]?.split("-")
  return parts !== undefined && parts.length === 4 ? parts[1] : undefined
}

/** A payload as JSON when it is JSON, as base64 bytes when it is not. */
export const decodePayload = (payload: Buffer | null) => {
  if (payload === null) return { _tag: "Empty" as const }
  const text = payload.toString("utf8")
  try {
    return { _tag: "Json" as const, value: JSON.parse(text) as unknown }
  } catch {
    return { _tag: "Raw" as const, base64: payload.toString("base64") }
  }
}

/** What a redriven record carries: the original headers without the dead-letter envelope. */
export const redriveHeaders = (headers: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(headers).filter(([name]) => !name.startsWith("kpipe-dlt-") && name !== "traceparent")
  )
