import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { EventId, MemberId } from "./Ids.ts"
import { version } from "./internal/fields.ts"

export const Email = Schema.String.pipe(Schema.pattern(/^[^\s@]+@[^\s@]+$/), Schema.brand("Email"))
export type Email = typeof Email.Type

export class MemberCreated extends Schema.Class<MemberCreated>("MemberCreated")({
  type: Schema.tag("MemberCreated"),
  version: version(1),
  eventId: EventId,
  memberId: MemberId,
  occurredAt: Schema.DateTimeUtc,
  nickname: Schema.NonEmptyString,
  email: Schema.optionalWith(Email, { exact: true })
}) {}

export const ChangedField = Schema.Literal("nickname", "email")
export type ChangedField = typeof ChangedField.Type

/** Version 2 added `changedFields`; version 1 records still decode, through `MemberUpdatedFromV1`. */
export class MemberUpdated extends Schema.Class<MemberUpdated>("MemberUpdated")({
  type: Schema.tag("MemberUpdated"),
  version: version(2),
  eventId: EventId,
  memberId: MemberId,
  occurredAt: Schema.DateTimeUtc,
  nickname: Schema.NonEmptyString,
  changedFields: Schema.Array(ChangedField)
}) {}

export class MemberDeleted extends Schema.Class<MemberDeleted>("MemberDeleted")({
  type: Schema.tag("MemberDeleted"),
  version: version(1),
  eventId: EventId,
  memberId: MemberId,
  occurredAt: Schema.DateTimeUtc,
  deletedAt: Schema.DateTimeUtc
}) {}

export const MemberUpdatedV1 = Schema.Struct({
  type: Schema.Literal("MemberUpdated"),
  version: Schema.Literal(1),
  eventId: EventId,
  memberId: MemberId,
  occurredAt: Schema.DateTimeUtc,
  nickname: Schema.NonEmptyString
}).annotations({ identifier: "MemberUpdatedV1" })

/**
 * Upgrades a version 1 `MemberUpdated`, which could only change the nickname. Decode-only, so that
 * nothing ever writes the old shape again.
 */
export const MemberUpdatedFromV1 = Schema.transformOrFail(MemberUpdatedV1, Schema.typeSchema(MemberUpdated), {
  strict: true,
  decode: (legacy) =>
    ParseResult.succeed(
      new MemberUpdated({
        eventId: legacy.eventId,
        memberId: legacy.memberId,
        occurredAt: legacy.occurredAt,
        nickname: legacy.nickname,
        changedFields: ["nickname"]
      })
    ),
  encode: (event, _, ast) =>
    ParseResult.fail(new ParseResult.Forbidden(ast, event, "MemberUpdated v1 is read-only; encode the current version"))
})

/** Every event on `member-events`; the current classes come first, so encoding picks them. */
export const MemberEvent = Schema.Union(MemberCreated, MemberUpdated, MemberDeleted, MemberUpdatedFromV1)
export type MemberEvent = typeof MemberEvent.Type
