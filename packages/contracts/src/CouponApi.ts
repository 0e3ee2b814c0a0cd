import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"
import { AdminAuth } from "./Admin.ts"
import {
  AlreadyRequested,
  CouponExpired,
  CouponNotFound,
  CouponNotYetOpen,
  CouponRecovering,
  CouponSoldOut,
  PublishFailed
} from "./CouponErrors.ts"
import {
  Coupon,
  CreateCouponRequest,
  IssueAccepted,
  IssueStatus,
  ReconciliationReport,
  UserCoupons
} from "./CouponModels.ts"
import * as Decimal from "./Decimal.ts"
import { JsonBody } from "./JsonBody.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { UserIdentity } from "./Users.ts"

/**
 * The contract of coupon-service (S4): admins create coupons (`Admin.AdminAuth`), users request them
 * first come, first served (`Users.UserIdentity`).
 */

const couponPath = Schema.Struct({ couponId: Decimal.FromString.pipe(Schema.compose(Ids.CouponId)) })

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
  .middleware(JsonBody)
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
