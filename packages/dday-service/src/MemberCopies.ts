import { SqlClient } from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { MemberStatus } from "@kpipe/contracts/Members"
import { Ids } from "@kpipe/events"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const Row = Schema.Struct({
  memberId: Schema.NumberFromString.pipe(Schema.compose(Ids.MemberId)),
  nickname: Schema.String,
  email: Schema.NullOr(Schema.String),
  status: MemberStatus,
  sourceUpdatedAt: Schema.DateTimeUtcFromDate,
  syncedAt: Schema.DateTimeUtcFromDate
})

/** d-day-service's copy of an auth-service member; `email` is null when it has none. */
export type MemberCopy = typeof Row.Type

/** A member's whole state at auth-service's time `sourceUpdatedAt` (from MemberCreated or a fetch). */
export interface MemberState {
  readonly memberId: Ids.MemberId
  readonly nickname: string
  readonly email: string | undefined
  readonly status: MemberStatus
  readonly sourceUpdatedAt: DateTime.Utc
}

/**
 * The local copies of auth-service's members (table `member_references`). Every write is guarded by
 * `source_updated_at`: a state or change older than the one held is ignored, so events may arrive
 * late, twice or out of order. A member that becomes DELETED loses its D-Days in the same statement
 * batch, so a DELETED member never has any.
 */
export class MemberCopies extends Effect.Service<MemberCopies>()("@kpipe/dday-service/MemberCopies", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient

    const select = (lock: "" | "FOR UPDATE") =>
      SqlSchema.findOne({
        Request: Ids.MemberId,
        Result: Row,
        execute: (memberId) =>
          sql`
            SELECT member_id, nickname, email, status, source_updated_at, synced_at
            FROM member_references WHERE member_id = ${memberId} ${sql.literal(lock)}`
      })
    const plain = select("")
    const locked = select("FOR UPDATE")

    const find = Effect.fn("MemberCopies.find")(function*(memberId: Ids.MemberId) {
      return yield* plain(memberId).pipe(Effect.catchTag("ParseError", (error) => Effect.die(error)))
    })

    /** The copy, row-locked until the transaction ends (none locked when it does not exist). */
    const findForUpdate = Effect.fn("MemberCopies.findForUpdate")(function*(memberId: Ids.MemberId) {
      return yield* locked(memberId).pipe(Effect.catchTag("ParseError", (error) => Effect.die(error)))
    })

    const dropDDays = (memberId: Ids.MemberId) => sql`DELETE FROM ddays WHERE member_id = ${memberId}`

    /** Stores `state` unless a state at least as recent is held; returns whether it was stored. */
    const putState = Effect.fn("MemberCopies.putState")(function*(state: MemberState) {
      const stored = yield* sql`
        INSERT INTO member_references (member_id, nickname, email, status, source_updated_at)
        VALUES (${state.memberId}, ${state.nickname}, ${state.email ?? null}, ${state.status},
          ${DateTime.toDateUtc(state.sourceUpdatedAt)})
        ON CONFLICT (member_id) DO UPDATE SET
          nickname = EXCLUDED.nickname,
          email = EXCLUDED.email,
          status = EXCLUDED.status,
          source_updated_at = EXCLUDED.source_updated_at,
          synced_at = now()
        WHERE member_references.source_updated_at < EXCLUDED.source_updated_at
        RETURNING member_id`
      if (stored.length > 0 && state.status === "DELETED") yield* dropDDays(state.memberId)
      return stored.length > 0
    })

    /** Applies a partial change made at `at` to an ACTIVE member held at an older time; returns whether it did. */
    const applyChange = Effect.fn("MemberCopies.applyChange")(
      function*(memberId: Ids.MemberId, at: DateTime.Utc, change: { readonly nickname?: string | undefined }) {
        const updated = yield* sql`
          UPDATE member_references SET
            nickname = coalesce(${change.nickname ?? null}, nickname),
            source_updated_at = ${DateTime.toDateUtc(at)},
            synced_at = now()
          WHERE member_id = ${memberId} AND status = 'ACTIVE' AND source_updated_at < ${DateTime.toDateUtc(at)}
          RETURNING member_id`
        return updated.length > 0
      }
    )

    /** Marks the member DELETED as of `at` and removes its D-Days, unless a newer state is held. */
    const markDeleted = Effect.fn("MemberCopies.markDeleted")(function*(memberId: Ids.MemberId, at: DateTime.Utc) {
      const updated = yield* sql`
        UPDATE member_references SET status = 'DELETED', source_updated_at = ${
        DateTime.toDateUtc(at)
      }, synced_at = now()
        WHERE member_id = ${memberId} AND source_updated_at < ${DateTime.toDateUtc(at)}
        RETURNING member_id`
      if (updated.length > 0) yield* dropDDays(memberId)
      return updated.length > 0
    })

    return { find, findForUpdate, putState, applyChange, markDeleted } as const
  })
}) {}
