import { assert, describe, it } from "@effect/vitest"
import { Ids, LoginEvents } from "@kpipe/events"
import * as Arbitrary from "effect/Arbitrary"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

const wire = Schema.parseJson(LoginEvents.LoginSucceeded)
// The wire format, as a topic carrying these events encodes it.
const topic = { encode: Schema.encode(wire), decode: Schema.decodeUnknown(wire) }

describe("LoginEvents", () => {
  it.prop("fromLogin derives the eventId from the login", [Arbitrary.make(LoginEvents.Login)], ([login]) => {
    const event = LoginEvents.LoginSucceeded.fromLogin(login)
    assert.strictEqual(
      event.eventId,
      `login:${login.accountId}:${login.sessionId}:${DateTime.toEpochMillis(login.occurredAt)}`
    )
    assert.strictEqual(event.accountId, login.accountId)
    assert.strictEqual(event.sessionId, login.sessionId)
    assert.deepStrictEqual(event.occurredAt, login.occurredAt)
  })

  it.effect.prop(
    "rejects an eventId that does not match the login",
    [Arbitrary.make(LoginEvents.LoginSucceeded), FastCheck.integer({ min: 1, max: 1_000_000 })],
    ([event, offset]) =>
      Effect.gen(function*() {
        const other = LoginEvents.loginEventId({ ...event, accountId: Ids.AccountId.make(event.accountId + offset) })
        const json = JSON.parse(yield* topic.encode(event))
        const error = yield* Effect.flip(topic.decode(JSON.stringify({ ...json, eventId: other })))
        assert.isTrue(ParseResult.isParseError(error))
        assert.throws(() => new LoginEvents.LoginSucceeded({ ...event, eventId: other }))
      })
  )

  it.effect("keeps any session id, separators and line breaks included", () =>
    Effect.gen(function*() {
      const event = LoginEvents.LoginSucceeded.fromLogin({
        accountId: Ids.AccountId.make(7),
        sessionId: Ids.SessionId.make("a:b\nc"),
        occurredAt: DateTime.unsafeMake("2024-03-01T09:30:00.000Z")
      })
      assert.strictEqual(event.eventId, "login:7:a:b\nc:1709285400000")
      assert.deepStrictEqual(yield* topic.decode(yield* topic.encode(event)), event)
    }))

  it("rejects an eventId in another format", () => {
    const isLoginEventId = Schema.is(LoginEvents.LoginEventId)
    for (const id of ["", "login:1:s", "logout:1:s:5", "login:0:s:5", "login:1::5", "login:1:s:5.5"]) {
      assert.isFalse(isLoginEventId(id), id)
    }
  })
})
