import { SqlClient } from "@effect/sql/SqlClient"
import { MemberStatus } from "@kpipe/contracts/Members"
import { Ids, LoginEvents, MemberEvents } from "@kpipe/events"
import { Outbox } from "@kpipe/pipeline"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Topics from "./Topics.ts"

const MemberRow = Schema.Struct({
  memberId: Schema.NumberFromString.pipe(Schema.compose(Ids.MemberId)),
  provider: Schema.String,
  subject: Schema.String,
  nickname: Schema.String,
  email: Schema.NullOr(Schema.String),
  status: MemberStatus,
  createdAt: Schema.DateTimeUtcFromDate,
  updatedAt: Schema.DateTimeUtcFromDate,
  deletedAt: Schema.NullOr(Schema.DateTimeUtcFromDate)
})
/** A member as stored: `email` and `deletedAt` are null when absent. */
export type Member = typeof MemberRow.Type

/** What a sign-in gives: the provider's subject and the profile to create the member with. */
export interface SignIn {
  readonly provider: string
  readonly subject: string
  readonly nickname: string
  readonly email?: string | undefined
}

export interface ProfileChange {
  readonly nickname?: string | undefined
  readonly email?: string | undefined
}

export interface Session {
  readonly memberId: Ids.MemberId
  readonly sessionId: Ids.SessionId
  readonly loggedInAt: DateTime.Utc
}

export class MemberNotFound extends Data.TaggedError("MemberNotFound")<{ readonly memberId: Ids.MemberId }> {}

/** The member deleted its account at `deletedAt`. */
export class MemberGone extends Data.TaggedError("MemberGone")<{
  readonly memberId: Ids.MemberId
  readonly deletedAt: DateTime.Utc
}> {}

export class NothingToUpdate extends Data.TaggedError("NothingToUpdate")<{ readonly message: string }> {}

/** A row that does not decode is a bug here, not the caller's fault. */
const decodeRow = (row: unknown) => Schema.decodeUnknown(MemberRow)(row).pipe(Effect.orDie)

const newEventId = () => Ids.EventId.make(crypto.randomUUID())

/**
 * A change's timestamp: now, but always after the member's previous change, so that `updatedAt`
 * (and the event's `occurredAt`) strictly increases per member even within one millisecond or
 * when the clock steps back. Consumers order a member's events by it.
 */
const changeTime = (now: DateTime.Utc, previous: DateTime.Utc) =>
  DateTime.greaterThan(now, previous) ? now : DateTime.add(previous, { millis: 1 })

/**
 * Members and their sessions. Every change commits together with its event in the outbox
 * (`member-events`, or `auth.login.events` for logins), and the event's `occurredAt` is the row's
 * new `updated_at`.
 */
export class Members extends Effect.Service<Members>()("@kpipe/auth-service/Members", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const topics = yield* Topics.resolve

    const findActive = (provider: string, subject: string) =>
      sql`SELECT * FROM members WHERE provider = ${provider} AND subject = ${subject} AND status = 'ACTIVE'`.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0 ? Effect.succeedNone : Effect.map(decodeRow(rows[0]), (row) => Option.some(row))
        )
      )

    const findById = (memberId: Ids.MemberId, lock: "" | "FOR UPDATE" | "FOR SHARE") =>
      Effect.gen(function*() {
        const rows = yield* sql`SELECT * FROM members WHERE member_id = ${memberId} ${sql.literal(lock)}`
        if (rows.length === 0) return yield* new MemberNotFound({ memberId })
        return yield* decodeRow(rows[0])
      })

    /** The member, locked for this transaction, unless it is unknown or deleted. */
    const findActiveById = (memberId: Ids.MemberId, lock: "FOR UPDATE" | "FOR SHARE") =>
      Effect.gen(function*() {
        const row = yield* findById(memberId, lock)
        if (row.status === "DELETED" && row.deletedAt !== null) {
          return yield* new MemberGone({ memberId, deletedAt: row.deletedAt })
        }
        return row
      })

    /** Inserts the member with its MemberCreated, or nothing when an ACTIVE member of the subject exists. */
    const create = (request: SignIn) =>
      sql.withTransaction(Effect.gen(function*() {
        const now = yield* DateTime.now
        const at = DateTime.toDateUtc(now)
        // Waits for a concurrent first sign-in of the same subject; if that one commits, inserts nothing.
        const inserted = yield* sql`
          INSERT INTO members ${
          sql.insert({
            provider: request.provider,
            subject: request.subject,
            nickname: request.nickname,
            email: request.email ?? null,
            status: "ACTIVE",
            createdAt: at,
            updatedAt: at
          })
        }
          ON CONFLICT (provider, subject) WHERE status = 'ACTIVE' DO NOTHING
          RETURNING *`
        if (inserted.length === 0) return Option.none<Member>()
        const row = yield* decodeRow(inserted[0])
        yield* Outbox.append(
          topics.members,
          new MemberEvents.MemberCreated({
            eventId: newEventId(),
            memberId: row.memberId,
            occurredAt: row.updatedAt,
            nickname: row.nickname,
            ...(row.email !== null ? { email: MemberEvents.Email.make(row.email) } : {})
          })
        )
        return Option.some(row)
      }))

    const signIn = Effect.fn("Members.signIn")(function*(request: SignIn) {
      yield* Effect.annotateCurrentSpan({ "auth.provider": request.provider })
      // A lost race against a concurrent first sign-in leaves that member to find; it could even
      // have been deleted already, so look again a few times.
      for (let attempt = 0; attempt < 5; attempt++) {
        const existing = yield* findActive(request.provider, request.subject)
        if (Option.isSome(existing)) return { member: existing.value, created: false }
        const created = yield* create(request)
        if (Option.isSome(created)) {
          yield* Effect.annotateCurrentSpan({ "auth.member_id": created.value.memberId })
          return { member: created.value, created: true }
        }
      }
      return yield* Effect.dieMessage(`sign-in of ${request.provider} subject kept conflicting`)
    })

    const get = Effect.fn("Members.get")(function*(memberId: Ids.MemberId) {
      yield* Effect.annotateCurrentSpan({ "auth.member_id": memberId })
      return yield* findById(memberId, "")
    })

    const updateProfile = Effect.fn("Members.updateProfile")(
      function*(memberId: Ids.MemberId, request: ProfileChange) {
        yield* Effect.annotateCurrentSpan({ "auth.member_id": memberId })
        return yield* sql.withTransaction(Effect.gen(function*() {
          const current = yield* findActiveById(memberId, "FOR UPDATE")
          const changedFields: Array<MemberEvents.ChangedField> = []
          if (request.nickname !== undefined && request.nickname !== current.nickname) changedFields.push("nickname")
          if (request.email !== undefined && request.email !== current.email) changedFields.push("email")
          if (changedFields.length === 0) {
            return yield* new NothingToUpdate({
              message: request.nickname === undefined && request.email === undefined
                ? "Give a nickname or an email to change"
                : "The nickname and email are already as given"
            })
          }
          const at = changeTime(yield* DateTime.now, current.updatedAt)
          const [updated] = yield* sql`
            UPDATE members SET
              nickname = ${request.nickname ?? current.nickname},
              email = ${request.email ?? current.email},
              updated_at = ${DateTime.toDateUtc(at)}
            WHERE member_id = ${memberId}
            RETURNING *`
          const row = yield* decodeRow(updated)
          yield* Outbox.append(
            topics.members,
            new MemberEvents.MemberUpdated({
              eventId: newEventId(),
              memberId,
              occurredAt: row.updatedAt,
              nickname: row.nickname,
              changedFields
            })
          )
          return row
        }))
      }
    )

    const remove = Effect.fn("Members.delete")(function*(memberId: Ids.MemberId) {
      yield* Effect.annotateCurrentSpan({ "auth.member_id": memberId })
      return yield* sql.withTransaction(Effect.gen(function*() {
        const current = yield* findActiveById(memberId, "FOR UPDATE")
        const at = DateTime.toDateUtc(changeTime(yield* DateTime.now, current.updatedAt))
        const [deleted] = yield* sql`
          UPDATE members SET status = 'DELETED', deleted_at = ${at}, updated_at = ${at}
          WHERE member_id = ${memberId}
          RETURNING *`
        const row = yield* decodeRow(deleted)
        yield* Outbox.append(
          topics.members,
          new MemberEvents.MemberDeleted({
            eventId: newEventId(),
            memberId,
            occurredAt: row.updatedAt,
            deletedAt: row.deletedAt ?? row.updatedAt
          })
        )
        return row
      }))
    })

    const login = Effect.fn("Members.login")(function*(memberId: Ids.MemberId) {
      yield* Effect.annotateCurrentSpan({ "auth.member_id": memberId })
      return yield* sql.withTransaction(Effect.gen(function*() {
        // FOR SHARE: a concurrent delete waits, so no session opens for a member deleted meanwhile.
        yield* findActiveById(memberId, "FOR SHARE")
        const occurredAt = yield* DateTime.now
        const sessionId = Ids.SessionId.make(crypto.randomUUID())
        yield* sql`INSERT INTO sessions ${
          sql.insert({ sessionId, memberId, createdAt: DateTime.toDateUtc(occurredAt) })
        }`
        yield* Outbox.append(
          topics.logins,
          LoginEvents.LoginSucceeded.fromLogin({ accountId: Ids.AccountId.make(memberId), sessionId, occurredAt })
        )
        return { memberId, sessionId, loggedInAt: occurredAt } satisfies Session
      }))
    })

    return { signIn, get, updateProfile, delete: remove, login } as const
  })
}) {}
