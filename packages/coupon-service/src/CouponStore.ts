import { SqlClient } from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import type { CouponEvents } from "@kpipe/events"
import { Ids } from "@kpipe/events"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/** The event names a coupon the database does not have: permanent, so it goes to the dead-letter topic. */
export class CouponMissing extends Data.TaggedError("CouponMissing")<{ readonly couponId: number }> {
  override get message() {
    return `Coupon ${this.couponId} does not exist`
  }
}

/** The user's row appeared while the batch was applied; the batch is tried again. */
export class IssueConflict extends Data.TaggedError("IssueConflict")<{ readonly eventIds: ReadonlyArray<string> }> {
  override get message() {
    return `Requests ${this.eventIds.join(", ")} met a coupon issued concurrently to the same user`
  }
}

/**
 * What the consumer's transaction did with one request. `RECLAIMED`: the reclaimer had already
 * failed it as never queued (`NOT_QUEUED`), so its late record issues nothing.
 */
export type IssueOutcome = "ISSUED" | "ALREADY_ISSUED" | "SOLD_OUT" | "RECLAIMED"

export interface Applied {
  readonly event: CouponEvents.CouponIssueRequested
  readonly outcome: IssueOutcome
}

export type FailureReason = "SOLD_OUT" | "DEAD_LETTERED" | "NOT_QUEUED"

/** A coupon as the database keeps it. */
export interface Coupon {
  readonly couponId: Ids.CouponId
  readonly name: string
  readonly totalQuantity: number
  /** Coupons the database has issued (the consumer's guarded counter). */
  readonly issuedQuantity: number
  readonly validFrom: DateTime.Utc
  readonly validUntil: DateTime.Utc
  readonly createdAt: DateTime.Utc
}

export interface NewCoupon {
  readonly name: string
  readonly totalQuantity: number
  readonly validFrom: DateTime.Utc
  readonly validUntil: DateTime.Utc
}

/** A coupon issued to a user. */
export interface UserCoupon {
  readonly couponId: Ids.CouponId
  readonly name: string
  readonly status: "AVAILABLE" | "USED" | "EXPIRED"
  readonly issuedAt: DateTime.Utc
  readonly validUntil: DateTime.Utc
}

const CouponRow = Schema.Struct({
  id: Ids.CouponId,
  name: Schema.String,
  totalQuantity: Schema.Int,
  issuedQuantity: Schema.Int,
  validFrom: Schema.DateTimeUtcFromDate,
  validUntil: Schema.DateTimeUtcFromDate,
  createdAt: Schema.DateTimeUtcFromDate
})

const toCoupon = (row: typeof CouponRow.Type): Coupon => ({
  couponId: row.id,
  name: row.name,
  totalQuantity: row.totalQuantity,
  issuedQuantity: row.issuedQuantity,
  validFrom: row.validFrom,
  validUntil: row.validUntil,
  createdAt: row.createdAt
})

const UserCouponRow = Schema.Struct({
  couponId: Ids.CouponId,
  name: Schema.String,
  status: Schema.Literal("AVAILABLE", "USED", "EXPIRED"),
  issuedAt: Schema.DateTimeUtcFromDate,
  validUntil: Schema.DateTimeUtcFromDate
})

const RequestOutcomeRow = Schema.Struct({
  issuedEventId: Schema.NullOr(Schema.String),
  issuedAt: Schema.NullOr(Schema.DateTimeUtcFromDate),
  failedEventId: Schema.NullOr(Schema.String),
  failureReason: Schema.NullOr(Schema.String)
})

/** The largest coupon id there can be (`coupons.id` is an INTEGER). */
export const maxCouponId = 2_147_483_647

/** What the database knows about one user's requests for one coupon. */
export interface RequestRecord {
  readonly issued: Option.Option<{ readonly eventId: string; readonly issuedAt: DateTime.Utc }>
  /** The latest failure, if any. */
  readonly failed: Option.Option<{ readonly eventId: string; readonly reason: string }>
}

/** The coupon tables. Everything here runs in the caller's transaction when there is one. */
export class CouponStore extends Effect.Service<CouponStore>()("@kpipe/coupon-service/CouponStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient

    const findRow = SqlSchema.findOne({
      Request: Ids.CouponId,
      Result: CouponRow,
      execute: (couponId) => sql`SELECT * FROM coupons WHERE id = ${couponId}`
    })

    const create = Effect.fn("CouponStore.create")(function*(request: NewCoupon) {
      const rows = yield* sql`
        INSERT INTO coupons ${
        sql.insert({
          name: request.name,
          totalQuantity: request.totalQuantity,
          validFrom: DateTime.toDateUtc(request.validFrom),
          validUntil: DateTime.toDateUtc(request.validUntil)
        })
      } RETURNING *`
      return toCoupon(yield* Schema.decodeUnknown(CouponRow)(rows[0]).pipe(Effect.orDie))
    })

    const find = Effect.fn("CouponStore.find")(function*(couponId: Ids.CouponId) {
      // The id is an INTEGER column: PostgreSQL refuses a larger one (22003) rather than finding nothing.
      if (couponId > maxCouponId) return Option.none()
      return Option.map(yield* findRow(couponId).pipe(Effect.catchTag("ParseError", Effect.die)), toCoupon)
    })

    /**
     * Applies a batch of requests in one statement: per coupon (row locked), the first requests in
     * offset order whose users hold no coupon yet get the units left, in `user_coupons` (UNIQUE per
     * coupon and user) and `issued_quantity` (never above `total_quantity`, also a CHECK); the rest
     * are `SOLD_OUT` (stored as failures) or `ALREADY_ISSUED`; a request the reclaimer failed as
     * `NOT_QUEUED` is `RECLAIMED`. The database can neither oversell nor issue twice, whatever Redis
     * let through.
     */
    const applyIssues = Effect.fn("CouponStore.applyIssues")(function*(
      events: ReadonlyArray<CouponEvents.CouponIssueRequested>
    ) {
      // An id beyond the INTEGER column names no coupon; PostgreSQL would refuse the batch's casts
      // (22003, a SqlError retried and then dead-lettered as one) rather than find nothing.
      const outOfRange = events.find((event) => event.couponId > maxCouponId)
      if (outOfRange !== undefined) return yield* new CouponMissing({ couponId: outOfRange.couponId })
      // The coupon rows are locked before the statement takes its snapshot, so it sees every
      // NOT_QUEUED failure committed by a reclaimer, which takes the same lock (`reclaim`).
      yield* sql`
        SELECT id FROM coupons WHERE id = ANY(${[...new Set(events.map((e) => e.couponId))]}::int[])
        ORDER BY id FOR UPDATE`
      const rows = yield* sql<{ eventId: string; outcome: IssueOutcome | "MISSING" | "CONFLICT" }>`
        WITH input AS (
          SELECT * FROM unnest(
            ${events.map((e) => e.eventId)}::uuid[],
            ${events.map((e) => e.couponId)}::int[],
            ${events.map((e) => e.userId)}::bigint[]
          ) WITH ORDINALITY AS t(event_id, coupon_id, user_id, ord)
        ), reclaimed AS (
          SELECT f.event_id FROM coupon_issue_failures f
          WHERE f.event_id IN (SELECT event_id FROM input) AND f.reason = 'NOT_QUEUED'
        ), stock AS (
          SELECT id, total_quantity - issued_quantity AS available FROM coupons
          WHERE id IN (SELECT coupon_id FROM input)
          FOR UPDATE
        ), candidates AS (
          SELECT DISTINCT ON (i.coupon_id, i.user_id) i.* FROM input i
          WHERE NOT EXISTS (SELECT 1 FROM user_coupons uc WHERE uc.coupon_id = i.coupon_id AND uc.user_id = i.user_id)
            AND NOT EXISTS (SELECT 1 FROM reclaimed r WHERE r.event_id = i.event_id)
          ORDER BY i.coupon_id, i.user_id, i.ord
        ), winners AS (
          SELECT ranked.* FROM (
            SELECT c.*, row_number() OVER (PARTITION BY c.coupon_id ORDER BY c.ord) AS rank FROM candidates c
          ) ranked JOIN stock s ON s.id = ranked.coupon_id
          WHERE ranked.rank <= s.available
        ), inserted AS (
          INSERT INTO user_coupons (coupon_id, user_id, event_id)
          SELECT coupon_id, user_id, event_id FROM winners
          ON CONFLICT DO NOTHING
          RETURNING event_id, coupon_id, user_id
        ), bumped AS (
          UPDATE coupons c SET issued_quantity = c.issued_quantity + n.issued
          FROM (SELECT coupon_id, count(*)::int AS issued FROM inserted GROUP BY coupon_id) n
          WHERE c.id = n.coupon_id
          RETURNING c.id
        )
        SELECT i.event_id::text AS event_id,
          CASE
            WHEN ins.event_id IS NOT NULL THEN 'ISSUED'
            WHEN s.id IS NULL THEN 'MISSING'
            WHEN w.event_id IS NOT NULL THEN 'CONFLICT'
            WHEN EXISTS (SELECT 1 FROM reclaimed r WHERE r.event_id = i.event_id) THEN 'RECLAIMED'
            WHEN EXISTS (SELECT 1 FROM user_coupons uc WHERE uc.coupon_id = i.coupon_id AND uc.user_id = i.user_id)
              OR EXISTS (SELECT 1 FROM inserted x WHERE x.coupon_id = i.coupon_id AND x.user_id = i.user_id)
              THEN 'ALREADY_ISSUED'
            ELSE 'SOLD_OUT'
          END AS outcome
        FROM input i
        LEFT JOIN inserted ins ON ins.event_id = i.event_id
        LEFT JOIN stock s ON s.id = i.coupon_id
        LEFT JOIN winners w ON w.event_id = i.event_id
        ORDER BY i.ord`
      const outcomes = new Map(rows.map((row) => [row.eventId, row.outcome] as const))
      const missing = events.filter((event) => outcomes.get(event.eventId) === "MISSING")
      if (missing.length > 0) return yield* new CouponMissing({ couponId: missing[0]!.couponId })
      // The user's row appeared concurrently (a rebalance overlapping two consumers): try again.
      const conflicts = rows.filter((row) => row.outcome === "CONFLICT")
      if (conflicts.length > 0) return yield* new IssueConflict({ eventIds: conflicts.map((row) => row.eventId) })
      const soldOut = events.filter((event) => outcomes.get(event.eventId) === "SOLD_OUT")
      if (soldOut.length > 0) {
        yield* sql`
          INSERT INTO coupon_issue_failures (event_id, coupon_id, user_id, reason, detail)
          SELECT event_id, coupon_id, user_id, 'SOLD_OUT', 'no stock left in the database'
          FROM unnest(
            ${soldOut.map((e) => e.eventId)}::uuid[],
            ${soldOut.map((e) => e.couponId)}::int[],
            ${soldOut.map((e) => e.userId)}::bigint[]
          ) AS t(event_id, coupon_id, user_id)
          ON CONFLICT (event_id) DO NOTHING`
      }
      return events.map((event): Applied => ({ event, outcome: outcomes.get(event.eventId) as IssueOutcome }))
    })

    const recordFailure = (event: CouponEvents.CouponIssueRequested, reason: FailureReason, detail: string) =>
      sql`
        INSERT INTO coupon_issue_failures ${
        sql.insert({ eventId: event.eventId, couponId: event.couponId, userId: event.userId, reason, detail })
      }
        ON CONFLICT (event_id) DO NOTHING`.pipe(Effect.asVoid, Effect.withSpan("CouponStore.recordFailure"))

    /**
     * Fails, as `NOT_QUEUED`, each of `requests` the database has no trace of: no coupon, no
     * failure, no claim of `groupId` (which would mean its record was consumed, e.g. dead-lettered
     * with its failure still to be recorded), and no coupon of its user through another request (a
     * retry after a publish whose outcome was unknown, which the broker had stored after all: the
     * user's unit is that coupon's). Under the coupon row's lock, which the consumer takes too
     * (`applyIssues`): a record arriving later is `RECLAIMED`, never issued. The event ids failed now.
     */
    const reclaim = Effect.fn("CouponStore.reclaim")(function*(
      couponId: Ids.CouponId,
      groupId: string,
      requests: ReadonlyArray<{ readonly userId: string; readonly eventId: string }>
    ) {
      if (requests.length === 0) return new Set<string>()
      const rows = yield* sql.withTransaction(Effect.zipRight(
        sql`SELECT id FROM coupons WHERE id = ${couponId} FOR UPDATE`,
        sql<{ eventId: string }>`
          INSERT INTO coupon_issue_failures (event_id, coupon_id, user_id, reason, detail)
          SELECT t.event_id, ${couponId}, t.user_id, 'NOT_QUEUED', 'the request never reached Kafka'
          FROM unnest(${requests.map((r) => r.eventId)}::uuid[], ${requests.map((r) => r.userId)}::bigint[])
            AS t(event_id, user_id)
          WHERE NOT EXISTS (
              SELECT 1 FROM user_coupons uc
              WHERE uc.event_id = t.event_id OR (uc.coupon_id = ${couponId} AND uc.user_id = t.user_id)
            )
            AND NOT EXISTS (
              SELECT 1 FROM kpipe_processed_events p
              WHERE p.consumer_group = ${groupId} AND p.event_id = t.event_id::text
            )
          ON CONFLICT (event_id) DO NOTHING
          RETURNING event_id::text AS event_id`
      ))
      return new Set(rows.map((row) => row.eventId))
    })

    const request = Effect.fn("CouponStore.request")(function*(couponId: Ids.CouponId, userId: Ids.UserId) {
      const rows = yield* sql`
        SELECT
          uc.event_id::text AS issued_event_id,
          uc.issued_at,
          f.event_id::text AS failed_event_id,
          f.reason AS failure_reason
        FROM (SELECT 1) AS one
        LEFT JOIN user_coupons uc ON uc.coupon_id = ${couponId} AND uc.user_id = ${userId}
        LEFT JOIN LATERAL (
          SELECT event_id, reason FROM coupon_issue_failures
          WHERE coupon_id = ${couponId} AND user_id = ${userId}
          ORDER BY failed_at DESC LIMIT 1
        ) f ON true`
      const row = yield* Schema.decodeUnknown(RequestOutcomeRow)(rows[0]).pipe(Effect.orDie)
      return {
        issued: row.issuedEventId !== null && row.issuedAt !== null
          ? Option.some({ eventId: row.issuedEventId, issuedAt: row.issuedAt })
          : Option.none(),
        failed: row.failedEventId !== null && row.failureReason !== null
          ? Option.some({ eventId: row.failedEventId, reason: row.failureReason })
          : Option.none()
      } satisfies RequestRecord
    })

    const userCoupons = Effect.fn("CouponStore.userCoupons")(function*(userId: Ids.UserId) {
      const rows = yield* sql`
        SELECT uc.coupon_id, c.name, uc.status, uc.issued_at, c.valid_until
        FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id
        WHERE uc.user_id = ${userId}
        ORDER BY uc.issued_at DESC, uc.id DESC`
      const coupons: ReadonlyArray<UserCoupon> = yield* Schema.decodeUnknown(Schema.Array(UserCouponRow))(rows).pipe(
        Effect.orDie
      )
      return coupons
    })

    /** The users holding the coupon, as the decimal strings Redis keeps. */
    const issuedUsers = Effect.fn("CouponStore.issuedUsers")(function*(couponId: Ids.CouponId) {
      const rows = yield* sql<{ userId: string }>`
        SELECT user_id::text AS user_id FROM user_coupons WHERE coupon_id = ${couponId}`
      return rows.map((row) => row.userId)
    })

    /** Which of `userIds` hold coupon `couponId` (through any request). */
    const holders = Effect.fn("CouponStore.holders")(function*(couponId: Ids.CouponId, userIds: ReadonlyArray<string>) {
      if (userIds.length === 0) return new Set<string>()
      const rows = yield* sql<{ userId: string }>`
        SELECT user_id::text AS user_id FROM user_coupons
        WHERE coupon_id = ${couponId} AND user_id = ANY(${userIds}::bigint[])`
      return new Set(rows.map((row) => row.userId))
    })

    /** Which of `eventIds` the database settled, and how. */
    const settled = Effect.fn("CouponStore.settled")(
      function*(couponId: Ids.CouponId, eventIds: ReadonlyArray<string>) {
        if (eventIds.length === 0) return new Map<string, "ISSUED" | "FAILED">()
        // An event both failed and issued (a dead letter redriven, then applied) is ISSUED: it holds a
        // unit. The later row wins in the Map, so the issued rows come last.
        const rows = yield* sql<{ eventId: string; outcome: "ISSUED" | "FAILED" }>`
        SELECT event_id::text AS event_id, 'FAILED' AS outcome, 0 AS rank FROM coupon_issue_failures
        WHERE coupon_id = ${couponId} AND event_id = ANY(${eventIds}::uuid[])
        UNION ALL
        SELECT event_id::text, 'ISSUED', 1 FROM user_coupons
        WHERE coupon_id = ${couponId} AND event_id = ANY(${eventIds}::uuid[])
        ORDER BY rank`
        return new Map(rows.map((row) => [row.eventId, row.outcome] as const))
      }
    )

    const counts = Effect.fn("CouponStore.counts")(function*(couponId: Ids.CouponId) {
      const rows = yield* sql<{ issuedQuantity: number; userCoupons: number; failures: number }>`
        SELECT
          c.issued_quantity,
          (SELECT count(*)::int FROM user_coupons WHERE coupon_id = c.id) AS user_coupons,
          (SELECT count(*)::int FROM coupon_issue_failures WHERE coupon_id = c.id) AS failures
        FROM coupons c WHERE c.id = ${couponId}`
      return Option.fromNullable(rows[0])
    })

    /** The coupons on sale, or whose sale ended less than `lookback` ago. */
    const recentCoupons = Effect.fn("CouponStore.recentCoupons")(function*(lookback: Duration.Duration) {
      const rows = yield* sql<{ id: number }>`
        SELECT id FROM coupons
        WHERE valid_from <= now() AND valid_until > now() - make_interval(secs => ${Duration.toSeconds(lookback)})`
      return rows.map((row) => Ids.CouponId.make(row.id))
    })

    return {
      create,
      find,
      applyIssues,
      reclaim,
      recordFailure,
      request,
      userCoupons,
      issuedUsers,
      settled,
      holders,
      counts,
      recentCoupons
    } as const
  })
}) {}
