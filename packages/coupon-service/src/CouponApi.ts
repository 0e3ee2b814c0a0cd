import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import { JsonBody } from "@kpipe/service-kit"
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"

/** The contract of coupon-service (S4): admins create coupons, users request them first come, first served. */

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

export class CreateCouponRequest extends Schema.Class<CreateCouponRequest>("CreateCouponRequest")(
  Schema.Struct({
    name: Schema.String.pipe(Schema.trimmed(), Schema.minLength(1), Schema.maxLength(100)),
    totalQuantity: Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(10_000_000)),
    validFrom: Schema.DateTimeUtc,
    validUntil: Schema.DateTimeUtc
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
  /** Why a request FAILED: `SOLD_OUT` (the database had no stock left) or `DEAD_LETTERED`. */
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

// Errors: each has its own status, and its tag tells clients what happened.

export class CouponNotFound extends Schema.TaggedError<CouponNotFound>()(
  "CouponNotFound",
  { couponId: Ids.CouponId, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class CouponNotYetOpen extends Schema.TaggedError<CouponNotYetOpen>()(
  "CouponNotYetOpen",
  { couponId: Ids.CouponId, validFrom: Schema.DateTimeUtc, message: Schema.String },
  HttpApiSchema.annotations({ status: 425, description: "The coupon's sale has not started yet" })
) {}

export class CouponExpired extends Schema.TaggedError<CouponExpired>()(
  "CouponExpired",
  { couponId: Ids.CouponId, validUntil: Schema.DateTimeUtc, message: Schema.String },
  HttpApiSchema.annotations({ status: 403, description: "The coupon can no longer be issued" })
) {}

export class CouponSoldOut extends Schema.TaggedError<CouponSoldOut>()(
  "CouponSoldOut",
  { couponId: Ids.CouponId, message: Schema.String },
  HttpApiSchema.annotations({ status: 410 })
) {}

export class AlreadyRequested extends Schema.TaggedError<AlreadyRequested>()(
  "AlreadyRequested",
  { couponId: Ids.CouponId, userId: Ids.UserId, message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class CouponRecovering extends Schema.TaggedError<CouponRecovering>()(
  "CouponRecovering",
  { couponId: Ids.CouponId, message: Schema.String },
  HttpApiSchema.annotations({ status: 503, description: "Redis lost the coupon's state; it is being rebuilt" })
) {}

export class PublishFailed extends Schema.TaggedError<PublishFailed>()(
  "PublishFailed",
  { couponId: Ids.CouponId, message: Schema.String },
  HttpApiSchema.annotations({ status: 503, description: "The request could not be queued; nothing was reserved" })
) {}

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503, description: "Redis or the database did not answer" })
) {}

export class MissingUserId extends Schema.TaggedError<MissingUserId>()(
  "MissingUserId",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

export class InvalidUserId extends Schema.TaggedError<InvalidUserId>()(
  "InvalidUserId",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** The requesting user, as the gateway vouched for it. */
export class CurrentUser extends Context.Tag("@kpipe/coupon-service/CurrentUser")<CurrentUser, Ids.UserId>() {}

export const userIdHeader = "X-User-Id"

/**
 * The gateway authenticates the user and forwards the id in `X-User-Id`; the service trusts it
 * (it is never exposed without the gateway) and only checks its shape.
 */
export class UserIdentity extends HttpApiMiddleware.Tag<UserIdentity>()("UserIdentity", {
  failure: Schema.Union(MissingUserId, InvalidUserId),
  provides: CurrentUser,
  security: {
    gateway: HttpApiSecurity.apiKey({ in: "header", key: userIdHeader }).pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "The authenticated user's id (a positive integer), set by the API gateway."
      )
    )
  }
}) {}

/** `Authorization: Bearer <ADMIN_TOKEN>`. */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("AdminAuth", {
  failure: Unauthorized,
  security: { adminToken: HttpApiSecurity.bearer }
}) {}

const couponPath = Schema.Struct({ couponId: Schema.NumberFromString.pipe(Schema.compose(Ids.CouponId)) })

export class AdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createCoupon", "/api/admin/coupons")
      .setPayload(CreateCouponRequest)
      .addSuccess(Coupon, { status: 201 })
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "Creates a coupon and opens its gate in Redis.")
  )
  .add(
    HttpApiEndpoint.get("reconciliation", "/api/admin/coupons/:couponId/reconciliation")
      .setPath(couponPath)
      .addSuccess(ReconciliationReport)
      .addError(CouponNotFound)
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "Compares the coupon's Redis state with the database and reports any drift.")
  )
  .middleware(JsonBody.JsonBody)
  .middleware(AdminAuth)
{}

/** Served ahead of the router for speed (`CouponHttp.IssueFastRoute`); the contract is this declaration. */
export const IssueEndpoint = HttpApiEndpoint.post("issue", "/api/coupons/:couponId/issue")
  .setPath(couponPath)
  .addSuccess(IssueAccepted, { status: 202 })
  .addError(CouponNotFound)
  .addError(CouponNotYetOpen)
  .addError(CouponExpired)
  .addError(CouponSoldOut)
  .addError(AlreadyRequested)
  .addError(CouponRecovering)
  .addError(PublishFailed)
  .addError(ServiceUnavailable)
  .annotate(
    OpenApi.Description,
    "Requests the coupon for the current user. 202 means queued: it will be ISSUED or visibly FAILED."
  )

export class CouponsGroup extends HttpApiGroup.make("coupons")
  .add(
    IssueEndpoint
  )
  .add(
    HttpApiEndpoint.get("issueStatus", "/api/coupons/:couponId/issue-status")
      .setPath(couponPath)
      .addSuccess(IssueStatus)
      .addError(CouponNotFound)
      .addError(ServiceUnavailable)
  )
  .add(
    HttpApiEndpoint.get("myCoupons", "/api/users/me/coupons")
      .addSuccess(UserCoupons)
      .addError(ServiceUnavailable)
  )
  .middleware(UserIdentity)
{}

export class CouponApi
  extends HttpApi.make("coupon-service").add(AdminGroup).add(CouponsGroup).annotate(OpenApi.Title, "coupon-service")
{}
