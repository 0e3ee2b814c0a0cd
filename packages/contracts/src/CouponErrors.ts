import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"

/** coupon-service's errors: each has its own status, and its tag tells clients what happened. */

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
