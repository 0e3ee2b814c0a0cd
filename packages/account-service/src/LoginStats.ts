import { SqlClient } from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import { Ids, type LoginEvents } from "@kpipe/events"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const Row = Schema.Struct({
  accountId: Schema.NumberFromString.pipe(Schema.compose(Ids.AccountId)),
  loginCount: Schema.NumberFromString.pipe(Schema.compose(Schema.Int)),
  lastLoginAt: Schema.DateTimeUtcFromDate,
  lastSessionId: Ids.SessionId,
  updatedAt: Schema.DateTimeUtcFromDate
})

/** An account's login statistics: logins applied, the latest one and its session. */
export type Stats = typeof Row.Type

/** Per-account login statistics (`account_login_stats`). */
export class LoginStats extends Effect.Service<LoginStats>()("@kpipe/account-service/LoginStats", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient

    const findRow = SqlSchema.findOne({
      Request: Ids.AccountId,
      Result: Row,
      execute: (accountId) =>
        sql`
          SELECT account_id, login_count, last_login_at, last_session_id, updated_at
          FROM account_login_stats WHERE account_id = ${accountId}`
    })

    /**
     * Counts one login. Not idempotent by itself: call it inside the consumer's transaction, whose
     * event claim makes it happen once per event. The latest login wins whatever the arrival order.
     */
    const record = Effect.fn("LoginStats.record")(function*(event: LoginEvents.LoginSucceeded) {
      const at = DateTime.toDateUtc(event.occurredAt)
      yield* sql`
        INSERT INTO account_login_stats (account_id, login_count, last_login_at, last_session_id)
        VALUES (${event.accountId}, 1, ${at}, ${event.sessionId})
        ON CONFLICT (account_id) DO UPDATE SET
          login_count = account_login_stats.login_count + 1,
          last_session_id = CASE WHEN EXCLUDED.last_login_at >= account_login_stats.last_login_at
            THEN EXCLUDED.last_session_id ELSE account_login_stats.last_session_id END,
          last_login_at = GREATEST(account_login_stats.last_login_at, EXCLUDED.last_login_at),
          updated_at = now()`
    })

    const get = Effect.fn("LoginStats.get")(function*(accountId: Ids.AccountId) {
      return yield* findRow(accountId).pipe(Effect.catchTag("ParseError", (error) => Effect.die(error)))
    })

    return { record, get } as const
  })
}) {}
