import * as Arbitrary from "effect/Arbitrary"
import * as DateTime from "effect/DateTime"
import * as Schema from "effect/Schema"
import { AccountId, SessionId } from "./Ids.ts"
import { version } from "./internal/fields.ts"

/** `login:{accountId}:{sessionId}:{epochMillis}`: the same login always gets the same id. */
export const LoginEventId = Schema.String.pipe(
  Schema.pattern(/^login:[1-9]\d*:[\s\S]+:-?\d+$/, { description: "login:{accountId}:{sessionId}:{epochMillis}" }),
  Schema.brand("LoginEventId")
)
export type LoginEventId = typeof LoginEventId.Type

export const Login = Schema.Struct({
  accountId: AccountId,
  sessionId: SessionId,
  occurredAt: Schema.DateTimeUtc
})
export type Login = typeof Login.Type

export const loginEventId = (login: Login): LoginEventId =>
  LoginEventId.make(`login:${login.accountId}:${login.sessionId}:${DateTime.toEpochMillis(login.occurredAt)}`)

const LoginSucceededFields = Schema.Struct({
  type: Schema.tag("LoginSucceeded"),
  version: version(1),
  eventId: LoginEventId,
  ...Login.fields
})

export class LoginSucceeded extends Schema.Class<LoginSucceeded>("LoginSucceeded")(
  LoginSucceededFields.pipe(Schema.filter(
    (event) => event.eventId === loginEventId(event) || `eventId must be ${loginEventId(event)}`,
    {
      // A random eventId almost never matches, so it is derived from the generated login.
      arbitrary: () => (fc) =>
        Arbitrary.makeLazy(Login)(fc).map((login) => ({
          type: "LoginSucceeded" as const,
          version: 1 as const,
          eventId: loginEventId(login),
          ...login
        }))
    }
  ))
) {
  static fromLogin(login: Login): LoginSucceeded {
    return new LoginSucceeded({
      eventId: loginEventId(login),
      accountId: login.accountId,
      sessionId: login.sessionId,
      occurredAt: login.occurredAt
    })
  }
}
