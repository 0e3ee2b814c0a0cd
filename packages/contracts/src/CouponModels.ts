import { Ids } from "@kpipe/events"
import * as DateTime from "effect/DateTime"
import * as Schema from "effect/Schema"
import { line } from "./Text.ts"

/** What coupon-service (S4) answers with: coupons, issue requests and their states, reconciliation reports. */

export class Coupon extends Schema.Class<Coupon>("Coupon")({
  couponId: Ids.CouponId,
  name: Schema.String,
  totalQuantity: Schema.Int,
  /** Coupons the database has issued (the consumer's guarded counter). */
  issuedQuantity: Schema.Int,
  validFrom: Schema.DateTimeUtc,
  validUntil: Schema.DateTimeUtc,
  createdAt: Schema.DateTimeUtc
}) {}

// What a PostgreSQL timestamptz holds (beyond it the insert fails, 22008, and was answered 503) and
// ISO 8601 writes plainly: years 1 to 9999.
const StorableDate = Schema.DateTimeUtc.pipe(
  Schema.filter((date) => {
    const year = date.pipe(DateTime.getPartUtc("year"))
    return (year >= 1 && year <= 9999) || "must be between the years 1 and 9999"
  })
)

export class CreateCouponRequest extends Schema.Class<CreateCouponRequest>("CreateCouponRequest")(
  Schema.Struct({
    name: line(100),
    totalQuantity: Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(10_000_000)),
    validFrom: StorableDate,
    validUntil: StorableDate
  }).pipe(
    Schema.filter((request) =>
      request.validUntil.epochMillis > request.validFrom.epochMillis || "validUntil must be after validFrom"
    )
  )
) {}

export const IssueState = Schema.Literal("PENDING", "ISSUED", "FAILED", "NOT_REQUESTED")
export type IssueState = typeof IssueState.Type

export class IssueAccepted extends Schema.Class<IssueAccepted>("IssueAccepted")({
  couponId: Ids.CouponId,
  userId: Ids.UserId,
  /** The id of the queued `CouponIssueRequested` event. */
  eventId: Ids.EventId,
  status: Schema.Literal("PENDING"),
  message: Schema.String
}) {}

export class IssueStatus extends Schema.Class<IssueStatus>("IssueStatus")({
  couponId: Ids.CouponId,
  userId: Ids.UserId,
  status: IssueState,
  message: Schema.String,
  /**
   * Why a request FAILED: `SOLD_OUT` (the database had no stock left), `DEAD_LETTERED`, or
   * `NOT_QUEUED` (the service stopped before the request reached Kafka).
   */
  reason: Schema.optionalWith(Schema.String, { exact: true }),
  issuedAt: Schema.optionalWith(Schema.DateTimeUtc, { exact: true })
}) {}

export class UserCoupon extends Schema.Class<UserCoupon>("UserCoupon")({
  couponId: Ids.CouponId,
  name: Schema.String,
  status: Schema.Literal("AVAILABLE", "USED", "EXPIRED"),
  issuedAt: Schema.DateTimeUtc,
  validUntil: Schema.DateTimeUtc
}) {}

export class UserCoupons extends Schema.Class<UserCoupons>("UserCoupons")({
  userId: Ids.UserId,
  coupons: Schema.Array(UserCoupon)
}) {}

export const DriftKind = Schema.Literal(
  "TOTAL_MISMATCH",
  "COUNTER_NOT_SET_SIZE",
  "RESERVED_OVER_TOTAL",
  "DB_ISSUED_OVER_TOTAL",
  "DB_COUNTER_NOT_ROWS",
  "ISSUED_NOT_IN_REDIS",
  "RESERVED_WITHOUT_REQUEST",
  /** A request pending for longer than any publish takes, with no outcome: it probably never reached Kafka. */
  "STALE_RESERVATION",
  "REDIS_STATE_MISSING"
)

export class Drift extends Schema.Class<Drift>("Drift")({
  kind: DriftKind,
  detail: Schema.String,
  /** Up to 20 user ids concerned, when the drift is about users. */
  userIds: Schema.Array(Schema.String)
}) {}

export class ReconciliationReport extends Schema.Class<ReconciliationReport>("ReconciliationReport")({
  couponId: Ids.CouponId,
  totalQuantity: Schema.Int,
  redis: Schema.Struct({
    /** `ready`, `recovering` (being rebuilt from the database) or `missing` (lost, rebuilt on the next request). */
    state: Schema.Literal("ready", "recovering", "missing"),
    counter: Schema.Int,
    members: Schema.Int,
    pending: Schema.Int
  }),
  db: Schema.Struct({
    issuedQuantity: Schema.Int,
    userCoupons: Schema.Int,
    failures: Schema.Int
  }),
  /** Requests accepted and not yet applied by the consumer (normal while a sale is running). */
  inFlight: Schema.Int,
  /**
   * Requests the database already settled while Redis still shows them pending: their after-commit
   * update was lost (a consumer killed between COMMIT and Redis). Harmless — quantity is right and
   * the status query answers from the database and repairs the entry.
   */
  lagging: Schema.Int,
  drift: Schema.Array(Drift),
  consistent: Schema.Boolean
}) {}
