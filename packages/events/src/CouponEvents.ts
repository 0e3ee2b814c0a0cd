import * as Schema from "effect/Schema"
import { CouponId, EventId, UserId } from "./Ids.ts"
import { version } from "./internal/fields.ts"

export class CouponIssueRequested extends Schema.Class<CouponIssueRequested>("CouponIssueRequested")({
  type: Schema.tag("CouponIssueRequested"),
  version: version(1),
  eventId: EventId,
  occurredAt: Schema.DateTimeUtc,
  couponId: CouponId,
  userId: UserId,
  /** Epoch milliseconds of the request, as the seed's consumers expect it. */
  timestamp: Schema.Int
}) {}
