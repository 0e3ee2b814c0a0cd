import { SqlClient } from "@effect/sql/SqlClient"
import { DDayId, LocalDate } from "@kpipe/contracts/DDayApi"
import { MemberStatus } from "@kpipe/contracts/Members"
import { Ids } from "@kpipe/events"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const Row = Schema.Struct({
  id: Schema.NumberFromString.pipe(Schema.compose(DDayId)),
  memberId: Schema.NumberFromString.pipe(Schema.compose(Ids.MemberId)),
  title: Schema.String,
  targetDate: LocalDate,
  createdAt: Schema.DateTimeUtcFromDate
})
/** Rows that do not decode are a bug here, not the caller's fault. */
const decodeRows = (rows: unknown) => Schema.decodeUnknown(Schema.Array(Row))(rows).pipe(Effect.orDie)
const decodeStatus = (rows: unknown) =>
  Schema.decodeUnknown(Schema.Array(Schema.Struct({ status: MemberStatus })))(rows).pipe(Effect.orDie)

export interface DDay {
  readonly id: DDayId
  readonly memberId: Ids.MemberId
  readonly title: string
  readonly targetDate: LocalDate
  /** Days from today (UTC) to the target date; negative once it has passed. */
  readonly daysRemaining: number
  /** `D-3`, `D-Day`, `D+2`. */
  readonly label: string
  readonly createdAt: DateTime.Utc
}

export interface NewDDay {
  readonly title: string
  readonly targetDate: LocalDate
}

export class MemberNotFound extends Data.TaggedError("MemberNotFound")<{ readonly memberId: Ids.MemberId }> {}

/** The member deleted its account. */
export class MemberGone extends Data.TaggedError("MemberGone")<{ readonly memberId: Ids.MemberId }> {}

export class DDayNotFound extends Data.TaggedError("DDayNotFound")<{
  readonly memberId: Ids.MemberId
  readonly ddayId: DDayId
}> {}

const dayMillis = 24 * 60 * 60 * 1000

/** Whole days from `today` to `target`, both `YYYY-MM-DD`. */
export const daysBetween = (today: string, target: string): number =>
  Math.round((Date.parse(`${target}T00:00:00Z`) - Date.parse(`${today}T00:00:00Z`)) / dayMillis)

/** The countdown label: `D-3` before, `D-Day` on, `D+2` after the date. */
export const label = (daysRemaining: number): string =>
  daysRemaining > 0 ? `D-${daysRemaining}` : daysRemaining === 0 ? "D-Day" : `D+${-daysRemaining}`

const toDDay = (today: string) => (row: typeof Row.Type): DDay => {
  const daysRemaining = daysBetween(today, row.targetDate)
  return { ...row, daysRemaining, label: label(daysRemaining) }
}

/** Members' D-Days (`ddays`); `list` gives them nearest target date first. Only an ACTIVE member can add one; a deleted member has none. */
export class DDays extends Effect.Service<DDays>()("@kpipe/dday-service/DDays", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const today = Effect.map(DateTime.now, DateTime.formatIsoDateUtc)
    const columns = sql`id, member_id, title, target_date::text AS target_date, created_at`

    /** FOR SHARE holds off the member's deletion (and its D-Day cleanup) until this transaction ends. */
    const requireActive = (memberId: Ids.MemberId, lock: "" | "FOR SHARE") =>
      sql`SELECT status FROM member_references WHERE member_id = ${memberId} ${sql.literal(lock)}`.pipe(
        Effect.flatMap(decodeStatus),
        Effect.flatMap(([row]): Effect.Effect<void, MemberNotFound | MemberGone> =>
          row === undefined
            ? Effect.fail(new MemberNotFound({ memberId }))
            : row.status === "DELETED"
            ? Effect.fail(new MemberGone({ memberId }))
            : Effect.void
        )
      )

    const create = Effect.fn("DDays.create")(function*(memberId: Ids.MemberId, request: NewDDay) {
      yield* Effect.annotateCurrentSpan({ "member.id": memberId })
      return yield* sql.withTransaction(Effect.gen(function*() {
        yield* requireActive(memberId, "FOR SHARE")
        const rows = yield* sql`
          INSERT INTO ddays (member_id, title, target_date)
          VALUES (${memberId}, ${request.title}, ${request.targetDate}::date)
          RETURNING ${columns}`
        const [row] = yield* decodeRows(rows)
        return toDDay(yield* today)(row!)
      }))
    })

    const list = Effect.fn("DDays.list")(function*(memberId: Ids.MemberId) {
      yield* Effect.annotateCurrentSpan({ "member.id": memberId })
      yield* requireActive(memberId, "")
      const rows = yield* decodeRows(
        yield* sql`SELECT ${columns} FROM ddays WHERE member_id = ${memberId} ORDER BY target_date, id`
      )
      return rows.map(toDDay(yield* today))
    })

    const remove = Effect.fn("DDays.remove")(function*(memberId: Ids.MemberId, ddayId: DDayId) {
      yield* Effect.annotateCurrentSpan({ "member.id": memberId, "dday.id": ddayId })
      const deleted = yield* sql`DELETE FROM ddays WHERE id = ${ddayId} AND member_id = ${memberId} RETURNING id`
      if (deleted.length === 0) return yield* new DDayNotFound({ memberId, ddayId })
    })

    return { create, list, remove } as const
  })
}) {}
