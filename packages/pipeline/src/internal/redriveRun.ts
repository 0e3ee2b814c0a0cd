import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { SqlClient } from "@effect/sql/SqlClient"
import { Producer } from "@kpipe/kafka"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as RateLimiter from "effect/RateLimiter"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { orderPosition, waitingKey } from "../PipelineMigrations.ts"
import type { Progress, RedriveOptions, RedriveResult } from "../Redrive.ts"
import { redrivenFromHeader, traceHeaders } from "./headers.ts"
import * as Audit from "./redriveAudit.ts"
import { columns, type FailureRow, redriveHeaders } from "./redriveQuery.ts"

/**
 * The most records a redrive batch takes: a batch's statements carry three parameters per record
 * (PostgreSQL takes 65,535 a statement) and its records go in one producer request, which the
 * broker refuses over `message.max.bytes` (1 MB by default).
 */
export const maxBatchSize = 1000

/**
 * A redrive that ends while the database is away (the failure that ended it, often) still closes its
 * audit row once the database is back; the operation's result waits for it.
 */
const closeRetry = Schedule.exponential("200 millis", 2).pipe(
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5))),
  Schedule.upTo(Duration.minutes(5))
)

export { redrivenFromHeader }
export const redriveOperationHeader = "kpipe-redrive-operation"

interface Redriven {
  readonly row: FailureRow
}

/**
 * Redrives the failures `ids` (frozen when the operation started) in batches: each batch, in one
 * transaction, moves its still-OPEN rows to REDRIVEN, releases their groups' DEAD_LETTERED claims
 * and sends the records to their original topics. A consumer claiming a redriven event waits on
 * that transaction, so the event is applied once: after COMMIT the claim is free, after ROLLBACK
 * the record is a duplicate and the failure stays OPEN.
 */
export const run = (
  operationId: string,
  ids: ReadonlyArray<string>,
  options: RedriveOptions,
  progress: SubscriptionRef.SubscriptionRef<Progress>,
  cancelled: Ref.Ref<boolean>
): Effect.Effect<RedriveResult, never, SqlClient | Producer.Producer> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const producer = yield* Producer.Producer
    const rate = options.ratePerSecond
    // Whole permits: a bucket of 0.5 permits never grants one record, so below 1/s it is one record
    // per 1/rate seconds, and 2.5/s is 2 records per 0.8 s.
    const perInterval = rate === undefined ? Infinity : Math.max(1, Math.floor(rate))
    const batchSize = Math.max(1, Math.min(options.batchSize ?? 100, perInterval, maxBatchSize))
    const limiter = rate === undefined ? undefined : yield* RateLimiter.make({
      limit: perInterval,
      interval: Duration.millis(1000 * perInterval / rate),
      algorithm: "token-bucket"
    })

    const update = (f: (p: Progress) => Progress) =>
      SubscriptionRef.updateAndGet(progress, f).pipe(
        Effect.flatMap((p) => Audit.progress(sql, operationId, p))
      )

    /**
     * A failure waits while an earlier record of its key (same group and topic) is still held,
     * unless that one is redriven by the same statement (it is sent first).
     */
    const heldBy = (chunk: ReadonlyArray<string>) =>
      sql`
        SELECT 1 FROM kpipe_failed_events e
        WHERE e.consumer_group = f.consumer_group AND e.topic = f.topic
          AND ${sql.literal(waitingKey("e.message_key"))} = ${sql.literal(waitingKey("f.message_key"))}
          AND e.status IN ('OPEN', 'PARKED') AND NOT (e.status = 'OPEN' AND ${sql.in("e.id", chunk)})
          AND ${sql.literal(orderPosition("e"))} < ${sql.literal(orderPosition("f"))}`

    const batch = (chunk: ReadonlyArray<string>) =>
      sql.withTransaction(Effect.gen(function*() {
        const rows = yield* sql<FailureRow>`
          UPDATE kpipe_failed_events f SET status = 'REDRIVEN', status_changed_at = clock_timestamp(),
            operation_id = ${operationId}
          WHERE ${sql.in("id", chunk)} AND status = 'OPEN' AND NOT EXISTS (${heldBy(chunk)})
          RETURNING ${columns(sql)}`
        const held = rows.length === chunk.length ? [] : yield* sql<{ id: string }>`
          SELECT id::text AS id FROM kpipe_failed_events f
          WHERE ${sql.in("id", chunk)} AND status = 'OPEN' AND EXISTS (${heldBy(chunk)})`
        const heldIds = new Set(held.map((r) => r.id))
        const sorted = [...rows].sort((a, b) =>
          a.topic.localeCompare(b.topic) || a.orderPartition - b.orderPartition ||
          Number(BigInt(a.orderOffset) - BigInt(b.orderOffset))
        )
        for (const row of sorted) {
          if (row.eventId !== null) {
            yield* sql`
              DELETE FROM kpipe_processed_events
              WHERE consumer_group = ${row.consumerGroup} AND event_id = ${row.eventId} AND outcome = 'DEAD_LETTERED'`
          }
        }
        const byTopic = new Map<
          string,
          Array<{ key: Buffer | null; value: Buffer | null; headers: Record<string, string> }>
        >()
        for (const row of sorted) {
          const parent = HttpTraceContext.fromHeaders(Headers.fromInput(row.headers))
          const trace = yield* traceHeaders.pipe(
            Effect.withSpan("Redrive.event", {
              kind: "producer",
              ...(Option.isSome(parent) ? { parent: parent.value } : {}),
              attributes: {
                "messaging.destination.name": row.topic,
                "kpipe.failure_id": row.id,
                "kpipe.event_id": row.eventId ?? "",
                "kpipe.operation_id": operationId
              }
            })
          )
          const messages = byTopic.get(row.topic) ?? []
          messages.push({
            key: row.messageKey,
            value: row.payload,
            headers: {
              ...redriveHeaders(row.headers),
              ...trace,
              [redrivenFromHeader]: row.id,
              [redriveOperationHeader]: operationId
            }
          })
          byTopic.set(row.topic, messages)
        }
        if (byTopic.size > 0) {
          yield* producer.sendBatch([...byTopic].map(([topic, messages]) => ({ topic, messages })))
        }
        const redriven = new Set(rows.map((r) => r.id))
        yield* Audit.events(sql, operationId, [
          ...sorted.map((row) => ({ failureId: row.id, eventId: row.eventId, outcome: "REDRIVEN" })),
          ...chunk.filter((id) => !redriven.has(id)).map((id) =>
            heldIds.has(id)
              ? { failureId: id, outcome: "HELD", detail: "an earlier failure of its key is still OPEN or PARKED" }
              : { failureId: id, outcome: "SKIPPED", detail: "no longer OPEN (redriven, parked or resolved meanwhile)" }
          )
        ])
        return { redriven: sorted.map((row): Redriven => ({ row })), held: heldIds.size }
      })).pipe(Effect.withSpan("Redrive.batch", { attributes: { size: chunk.length } }))

    /** Waits until every canary is applied or failed again; the outcome of the first to fail again wins. */
    const watchCanary = (canaries: ReadonlyArray<Redriven>) =>
      Effect.gen(function*() {
        const tracked = canaries.filter(({ row }) => row.eventId !== null)
        const groups = tracked.map(({ row }) => row.consumerGroup)
        const eventIds = tracked.map(({ row }) => row.eventId!)
        const timeout = Duration.decode(options.canaryTimeout ?? "60 seconds")
        const poll = sql<{ outcome: string; eventId: string }>`
          SELECT p.outcome, p.event_id FROM kpipe_processed_events p
          JOIN unnest(${groups}::text[], ${eventIds}::text[]) AS c(g, e)
            ON p.consumer_group = c.g AND p.event_id = c.e`
        const started = Date.now()
        while (true) {
          const rows = yield* poll
          const applied = rows.filter((r) => r.outcome === "APPLIED").length
          const failedAgain = rows.filter((r) => r.outcome === "DEAD_LETTERED")
          yield* update((p) => ({ ...p, canary: { size: canaries.length, applied, failedAgain: failedAgain.length } }))
          if (failedAgain.length > 0) {
            return { _tag: "FailedAgain" as const, eventIds: failedAgain.map((r) => r.eventId) }
          }
          if (applied === tracked.length) return { _tag: "Applied" as const }
          if (Date.now() - started > Duration.toMillis(timeout)) return { _tag: "TimedOut" as const }
          yield* Effect.sleep("200 millis")
        }
      })

    const isCancelled = Effect.zipWith(
      Ref.get(cancelled),
      sql<{ cancelRequested: boolean }>`SELECT cancel_requested FROM kpipe_ops_audit WHERE id = ${operationId}`,
      (local, rows) => local || rows[0]?.cancelRequested === true
    )

    /**
     * Waits until the rate allows `size` more records; false when the redrive was cancelled meanwhile.
     * The cancel is looked up only once the wait passed a second: a lookup interrupted by the limiter
     * would cost a cancel request to the database per batch.
     */
    const paced = (size: number) =>
      limiter === undefined ? Effect.succeed(true) : Effect.race(
        limiter(Effect.succeed(true)).pipe(RateLimiter.withCost(size)),
        isCancelled.pipe(
          Effect.delay("1 second"),
          Effect.repeat({ schedule: Schedule.spaced("1 second"), until: (cancelled) => cancelled }),
          Effect.as(false)
        )
      )
    const cancelledResult = { status: "CANCELLED" as const, reason: "cancelled by request" }

    const count = (
      chunk: ReadonlyArray<string>,
      done: { readonly redriven: ReadonlyArray<Redriven>; readonly held: number }
    ) =>
      update((p) => ({
        ...p,
        redriven: p.redriven + done.redriven.length,
        held: p.held + done.held,
        skipped: p.skipped + chunk.length - done.redriven.length - done.held
      }))

    const body = Effect.gen(function*() {
      let next = 0
      const canarySize = Math.min(options.canary ?? 0, ids.length)
      yield* update((p) => ({ ...p, phase: canarySize > 0 ? "canary" : "bulk" }))
      if (canarySize > 0) {
        const canaries: Array<Redriven> = []
        // A record held (an earlier failure of its key waits) or skipped (taken meanwhile) is sent
        // nowhere, so it checks nothing: records are taken until `canarySize` went out, or none is left.
        while (canaries.length < canarySize && next < ids.length) {
          const chunk = ids.slice(next, next + Math.min(batchSize, canarySize - canaries.length))
          // A canary is watched through its group's claim of its event id; an undecodable record has
          // none, so it could never be seen applied and the bulk would follow unchecked.
          const [untracked] = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM kpipe_failed_events WHERE ${sql.in("id", chunk)} AND event_id IS NULL`
          if (untracked!.n > 0) {
            return {
              status: "STOPPED" as const,
              reason: `${untracked!.n} canaries have no event id (undecodable records): they cannot be watched; ${
                canaries.length === 0 ? "nothing was redriven" : `${canaries.length} canaries were redriven before them`
              }`
            }
          }
          if (!(yield* paced(chunk.length))) return cancelledResult
          next += chunk.length
          const done = yield* batch(chunk)
          canaries.push(...done.redriven)
          yield* count(chunk, done)
        }
        yield* update((p) => ({ ...p, phase: "waiting-canary" }))
        const verdict = yield* watchCanary(canaries)
        if (verdict._tag !== "Applied") {
          return {
            status: "STOPPED" as const,
            reason: verdict._tag === "FailedAgain"
              ? `canary failed again: ${verdict.eventIds.join(", ")}`
              : "canary timed out"
          }
        }
        yield* update((p) => ({ ...p, phase: "bulk" }))
      }
      while (next < ids.length) {
        if (yield* isCancelled) return cancelledResult
        const chunk = ids.slice(next, next + batchSize)
        if (!(yield* paced(chunk.length))) return cancelledResult
        next += chunk.length
        yield* count(chunk, yield* batch(chunk))
      }
      return { status: "SUCCEEDED" as const, reason: undefined }
    })

    // What the run came to, once known: a stop while its audit row is being closed records that.
    let outcome: { readonly status: RedriveResult["status"]; readonly reason: string | undefined } | undefined
    const finish = (status: RedriveResult["status"], reason: string | undefined) =>
      Effect.gen(function*() {
        outcome ??= { status, reason }
        const p = yield* SubscriptionRef.updateAndGet(progress, (p) => ({ ...p, phase: "done" as const }))
        const result: RedriveResult = {
          operationId,
          status,
          total: ids.length,
          redriven: p.redriven,
          skipped: p.skipped,
          held: p.held,
          canary: p.canary,
          reason
        }
        yield* Audit.close(sql, operationId, status, result).pipe(
          Effect.tapError((error) =>
            Effect.logWarning("The redrive's audit row could not be closed; trying again", error).pipe(
              Effect.annotateLogs({ operationId, status })
            )
          ),
          Effect.retry(closeRetry),
          Effect.tapError((error) =>
            Effect.logError("The redrive's audit row stays RUNNING: it could not be closed", error).pipe(
              Effect.annotateLogs({ operationId, status })
            )
          ),
          Effect.orDie
        )
        return result
      })

    return yield* body.pipe(
      Effect.matchCauseEffect({
        onSuccess: ({ reason, status }) => finish(status, reason),
        onFailure: (cause) => finish("FAILED", String(cause))
      }),
      Effect.onInterrupt(() =>
        finish(outcome?.status ?? "CANCELLED", outcome?.reason ?? "interrupted").pipe(
          Effect.interruptible,
          Effect.timeoutOption("10 seconds"),
          Effect.flatMap(Option.match({
            onSome: () => Effect.void,
            onNone: () =>
              Effect.logError("The redrive was stopped before its audit row could be closed; it stays RUNNING").pipe(
                Effect.annotateLogs({ operationId })
              )
          }))
        )
      )
    )
  }).pipe(Effect.scoped, Effect.orDie)
