import { SqlClient } from "@effect/sql/SqlClient"
import { Ids } from "@kpipe/events"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash, randomBytes } from "node:crypto"
import { Config } from "./Config.ts"

/** The token is missing, unknown, or past its expiry. */
export class TokenRejected extends Data.TaggedError("TokenRejected")<{
  readonly reason: "Missing" | "Invalid" | "Expired"
}> {}

export interface IssuedToken {
  readonly token: Redacted.Redacted
  readonly expiresAt: DateTime.Utc
}

/** Only the hash is stored: a leaked table opens no session. */
const hash = (token: string) => createHash("sha256").update(token).digest()

/**
 * Members' session tokens: 32 random bytes, given once at sign-in, valid for `Config.sessionTtl`.
 * Stored hashed (`member_tokens`). A deleted member's token still names it, so its requests are
 * answered 410 `MemberGone` rather than 401.
 */
export class SessionTokens extends Effect.Service<SessionTokens>()("@kpipe/auth-service/SessionTokens", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const { sessionTtl } = yield* Config

    const issue = Effect.fn("SessionTokens.issue")(function*(memberId: Ids.MemberId) {
      yield* Effect.annotateCurrentSpan({ "auth.member_id": memberId })
      const token = randomBytes(32).toString("base64url")
      const now = yield* DateTime.now
      const expiresAt = DateTime.addDuration(now, sessionTtl)
      yield* sql`INSERT INTO member_tokens ${
        sql.insert({
          tokenHash: hash(token),
          memberId,
          createdAt: DateTime.toDateUtc(now),
          expiresAt: DateTime.toDateUtc(expiresAt)
        })
      }`
      return { token: Redacted.make(token), expiresAt } satisfies IssuedToken
    })

    /** The member whose token `token` is. */
    const verify = Effect.fn("SessionTokens.verify")(function*(token: Redacted.Redacted) {
      const text = Redacted.value(token)
      if (text === "") return yield* new TokenRejected({ reason: "Missing" })
      const rows = yield* sql<{ memberId: string; expiresAt: Date }>`
        SELECT member_id, expires_at FROM member_tokens WHERE token_hash = ${hash(text)}`
      const [row] = rows
      if (row === undefined) return yield* new TokenRejected({ reason: "Invalid" })
      if (row.expiresAt.getTime() <= DateTime.toEpochMillis(yield* DateTime.now)) {
        return yield* new TokenRejected({ reason: "Expired" })
      }
      return Ids.MemberId.make(Number(row.memberId))
    })

    return { issue, verify } as const
  })
}) {}
