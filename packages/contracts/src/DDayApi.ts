import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"
import * as Decimal from "./Decimal.ts"
import { JsonBody } from "./JsonBody.ts"
import { MemberGone, MemberNotFound, MemberStatus } from "./Members.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { line } from "./Text.ts"
import { Forbidden, UserIdentity } from "./Users.ts"

/**
 * The contract of d-day-service. A member's D-Days and copy are the gateway's user's own: `X-User-Id`
 * (`Users.UserIdentity`) must be the path's member, otherwise 403 `Forbidden`.
 */

export const DDayId = Schema.Int.pipe(Schema.positive(), Schema.brand("DDayId"))
export type DDayId = typeof DDayId.Type

/** A calendar date, `YYYY-MM-DD`. */
export const LocalDate = Schema.String.pipe(
  Schema.pattern(/^\d{4}-\d{2}-\d{2}$/, { description: "a date, YYYY-MM-DD" }),
  Schema.filter((text) => {
    const date = new Date(`${text}T00:00:00Z`)
    // PostgreSQL has no year 0.
    return (!Number.isNaN(date.getTime()) && date.toISOString().startsWith(text) && !text.startsWith("0000")) ||
      `${text} is not a calendar date`
  }),
  Schema.brand("LocalDate")
)
export type LocalDate = typeof LocalDate.Type

export const Title = line(100)

/** d-day-service's copy of an auth-service member, as the member events (or a fallback fetch) left it. */
export class MemberCopy extends Schema.Class<MemberCopy>("MemberCopy")({
  memberId: Ids.MemberId,
  nickname: Schema.String,
  email: Schema.optionalWith(Schema.String, { exact: true }),
  status: MemberStatus,
  /** auth-service's time of the state held here; older events are ignored. */
  sourceUpdatedAt: Schema.DateTimeUtc,
  /** When this copy last changed. */
  syncedAt: Schema.DateTimeUtc
}) {}

export class DDay extends Schema.Class<DDay>("DDay")({
  id: DDayId,
  memberId: Ids.MemberId,
  title: Schema.String,
  targetDate: LocalDate,
  /** Days from today (UTC) to the target date; negative once it has passed. */
  daysRemaining: Schema.Int,
  /** `D-3`, `D-Day`, `D+2`. */
  label: Schema.String,
  createdAt: Schema.DateTimeUtc
}) {}

export class DDayList extends Schema.Class<DDayList>("DDayList")({
  memberId: Ids.MemberId,
  ddays: Schema.Array(DDay)
}) {}

export class CreateDDayRequest extends Schema.Class<CreateDDayRequest>("CreateDDayRequest")({
  title: Title,
  targetDate: LocalDate
}) {}

export class DDayNotFound extends Schema.TaggedError<DDayNotFound>()(
  "DDayNotFound",
  { memberId: Ids.MemberId, ddayId: DDayId },
  HttpApiSchema.annotations({ status: 404 })
) {}

const memberId = Decimal.FromString.pipe(Schema.compose(Ids.MemberId))
const memberPath = Schema.Struct({ memberId })

export class DDaysGroup extends HttpApiGroup.make("ddays")
  .add(
    HttpApiEndpoint.post("create", "/api/members/:memberId/ddays")
      .setPath(memberPath)
      .setPayload(CreateDDayRequest)
      .addSuccess(DDay, { status: 201 })
      .addError(MemberNotFound)
      .addError(MemberGone)
      .annotate(OpenApi.Description, "Adds a D-Day for an ACTIVE member.")
  )
  .add(
    HttpApiEndpoint.get("list", "/api/members/:memberId/ddays")
      .setPath(memberPath)
      .addSuccess(DDayList)
      .addError(MemberNotFound)
      .addError(MemberGone)
      .annotate(OpenApi.Description, "A member's D-Days, nearest target date first, with the days remaining.")
  )
  .add(
    HttpApiEndpoint.del("remove", "/api/members/:memberId/ddays/:ddayId")
      .setPath(Schema.Struct({ memberId, ddayId: Decimal.FromString.pipe(Schema.compose(DDayId)) }))
      .addError(DDayNotFound)
  )
  .addError(ServiceUnavailable)
  .addError(Forbidden)
  .middleware(JsonBody)
  .middleware(UserIdentity)
{}

export class MembersGroup extends HttpApiGroup.make("members").add(
  HttpApiEndpoint.get("getMember", "/api/members/:memberId")
    .setPath(memberPath)
    .addSuccess(MemberCopy)
    .addError(MemberNotFound)
    .annotate(
      OpenApi.Description,
      "The gateway's user's own copy of their auth-service member (e-mail included), as synchronised from member events."
    )
)
  .addError(ServiceUnavailable)
  .addError(Forbidden)
  .middleware(UserIdentity)
{}

export class DDayApi extends HttpApi.make("d-day-service")
  .add(DDaysGroup)
  .add(MembersGroup)
  .annotate(OpenApi.Title, "d-day-service")
{}
