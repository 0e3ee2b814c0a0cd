import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"

/** A member as auth-service and d-day-service both speak of it: its status and the errors about it. */

export const MemberStatus = Schema.Literal("ACTIVE", "DELETED")
export type MemberStatus = typeof MemberStatus.Type

export class MemberNotFound extends Schema.TaggedError<MemberNotFound>()(
  "MemberNotFound",
  { memberId: Ids.MemberId },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The member deleted its account (`MemberDeleted` event); `deletedAt` where the service knows it. */
export class MemberGone extends Schema.TaggedError<MemberGone>()(
  "MemberGone",
  { memberId: Ids.MemberId, deletedAt: Schema.optionalWith(Schema.DateTimeUtc, { exact: true }) },
  HttpApiSchema.annotations({ status: 410 })
) {}
