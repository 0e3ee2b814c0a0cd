import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { UpdateProfileRequest } from "@kpipe/contracts/AuthApi"
import { LoginEvents, MemberEvents } from "@kpipe/events"
import { RawHttp } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { bearer, client, outboxRows, signInRequest, TestLive, writes } from "./utils.ts"

const decodeMemberEvent = Schema.decodeUnknownSync(SeedTopics.memberEvents.schema)
const decodeLoginEvent = Schema.decodeUnknownSync(SeedTopics.loginEvents.schema)

const memberRow = (memberId: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ status: string; updatedAt: Date; deletedAt: Date | null }>`
      SELECT status, updated_at, deleted_at FROM members WHERE member_id = ${memberId}`).pipe(
      Effect.map((rows) => rows[0]!)
    )

describe("Members over HTTP", () => {
  it.live("the first sign-in creates the member and exactly one MemberCreated outbox row", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { created, member } = yield* api.members.signIn({
        payload: signInRequest("first", { nickname: "Alice", email: "alice@example.com" })
      })
      assert.isTrue(created)
      assert.strictEqual(member.provider, "google")
      assert.strictEqual(member.subject, "first")
      assert.strictEqual(member.nickname, "Alice")
      assert.strictEqual(member.email, "alice@example.com")
      assert.strictEqual(member.status, "ACTIVE")
      assert.isUndefined(member.deletedAt)
      assert.isTrue(DateTime.Equivalence(member.createdAt, member.updatedAt))

      const rows = yield* outboxRows
      assert.strictEqual(rows.length, 1)
      const [row] = rows
      assert.strictEqual(row!.topic, "member-events")
      assert.strictEqual(row!.messageKey, String(member.memberId))
      assert.strictEqual(row!.eventType, "MemberCreated")
      const event = decodeMemberEvent(row!.payload)
      assert.instanceOf(event, MemberEvents.MemberCreated)
      assert.deepStrictEqual(
        event,
        new MemberEvents.MemberCreated({
          eventId: event.eventId,
          memberId: member.memberId,
          occurredAt: member.updatedAt,
          nickname: "Alice",
          email: MemberEvents.Email.make("alice@example.com")
        })
      )
      assert.strictEqual(row!.eventId, event.eventId)
      assert.strictEqual(
        (yield* memberRow(member.memberId)).updatedAt.getTime(),
        DateTime.toEpochMillis(event.occurredAt)
      )

      const fetched = yield* api.members.getMember({ path: { memberId: member.memberId } })
      assert.deepStrictEqual(fetched, member)
    }).pipe(Effect.provide(TestLive)))

  it.live("a sign-in without an email creates a member without one", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("no-email") })
      assert.isUndefined(member.email)
      const event = decodeMemberEvent((yield* outboxRows)[0]!.payload)
      assert.instanceOf(event, MemberEvents.MemberCreated)
      assert.isFalse("email" in event)
    }).pipe(Effect.provide(TestLive)))

  it.live("a member stored before control characters were refused still reads and updates", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("stored-before") })
      yield* sql`UPDATE members SET email = ${"a\u0001b@x.io"}, nickname = ${"Bo\tb"} WHERE member_id = ${member.memberId}`
      const read = yield* api.members.getMember({ path: { memberId: member.memberId } })
      assert.deepInclude(read, { email: "a\u0001b@x.io", nickname: "Bo\tb" })
      const updated = yield* RawHttp.request(
        "PATCH",
        `/api/members/${member.memberId}`,
        JSON.stringify({ nickname: "Bob" }),
        bearer(api.tokenOf(member.memberId))
      )
      assert.strictEqual(updated.status, 200, JSON.stringify(updated.body))
    }).pipe(Effect.provide(TestLive)))

  it.live("a second sign-in returns the same member and writes nothing", () =>
    Effect.gen(function*() {
      const api = yield* client
      const first = yield* api.members.signIn({ payload: signInRequest("again") })
      const before = yield* writes
      const second = yield* api.members.signIn({ payload: signInRequest("again", { nickname: "Someone else" }) })
      assert.isFalse(second.created)
      assert.deepStrictEqual(second.member, first.member)
      assert.deepStrictEqual(yield* writes, before)
    }).pipe(Effect.provide(TestLive)))

  it.live("10 concurrent first sign-ins of one subject create one member and one event", () =>
    Effect.gen(function*() {
      const api = yield* client
      const responses = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => i),
        (i) => api.members.signIn({ payload: signInRequest("racing", { nickname: `Racer ${i}` }) }),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(responses.filter((r) => r.created).length, 1)
      const ids = new Set(responses.map((r) => r.member.memberId))
      assert.strictEqual(ids.size, 1)
      const winner = responses.find((r) => r.created)!.member
      for (const response of responses) assert.deepStrictEqual(response.member, winner)

      assert.deepStrictEqual(yield* writes, { outbox: 1, members: 1, sessions: 0 })
      const [row] = yield* outboxRows
      assert.strictEqual(row!.eventType, "MemberCreated")
      assert.strictEqual(row!.messageKey, String(winner.memberId))
    }).pipe(Effect.provide(TestLive)))

  it.live("an update writes MemberUpdated with exactly the changed fields, at the row's new updatedAt", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { member } = yield* api.members.signIn({
        payload: signInRequest("updating", { nickname: "Alice", email: "alice@example.com" })
      })
      const memberId = member.memberId
      const update = (payload: ConstructorParameters<typeof UpdateProfileRequest>[0]) =>
        api.members.updateProfile({ path: { memberId }, payload: new UpdateProfileRequest(payload) })

      const renamed = yield* update({ nickname: "Alicia" })
      const moved = yield* update({ nickname: "Alicia", email: "alicia@example.com" })
      const both = yield* update({ nickname: "Ali", email: "ali@example.com" })
      assert.strictEqual(both.nickname, "Ali")
      assert.strictEqual(both.email, "ali@example.com")
      assert.strictEqual(both.status, "ACTIVE")

      const updatedAts = [member, renamed, moved, both].map((m) => DateTime.toEpochMillis(m.updatedAt))
      for (let i = 1; i < updatedAts.length; i++) assert.isAbove(updatedAts[i]!, updatedAts[i - 1]!)

      const events = (yield* outboxRows).slice(1)
      assert.deepStrictEqual(events.map((row) => [row.eventType, row.messageKey]), [
        ["MemberUpdated", String(memberId)],
        ["MemberUpdated", String(memberId)],
        ["MemberUpdated", String(memberId)]
      ])
      const decoded = events.map((row) => decodeMemberEvent(row.payload))
      const expected = [
        { member: renamed, nickname: "Alicia", changedFields: ["nickname"] },
        { member: moved, nickname: "Alicia", changedFields: ["email"] },
        { member: both, nickname: "Ali", changedFields: ["nickname", "email"] }
      ] as const
      decoded.forEach((event, i) => {
        assert.deepStrictEqual(
          event,
          new MemberEvents.MemberUpdated({
            eventId: event.eventId,
            memberId,
            occurredAt: expected[i]!.member.updatedAt,
            nickname: expected[i]!.nickname,
            changedFields: [...expected[i]!.changedFields]
          })
        )
      })
      assert.strictEqual(
        (yield* memberRow(memberId)).updatedAt.getTime(),
        DateTime.toEpochMillis(decoded[2]!.occurredAt)
      )
    }).pipe(Effect.provide(TestLive)))

  it.live("an update that changes nothing answers 400 NothingToUpdate and writes nothing", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { member } = yield* api.members.signIn({
        payload: signInRequest("no-op", { nickname: "Alice", email: "alice@example.com" })
      })
      const before = yield* writes
      const path = { memberId: member.memberId }
      const same = yield* api.members.updateProfile({
        path,
        payload: new UpdateProfileRequest({ nickname: "Alice", email: "alice@example.com" })
      }).pipe(Effect.flip)
      assert.strictEqual(same._tag, "NothingToUpdate")
      const empty = yield* RawHttp.request(
        "PATCH",
        `/api/members/${member.memberId}`,
        "{}",
        bearer(api.tokenOf(member.memberId))
      )
      assert.strictEqual(empty.status, 400)
      assert.deepInclude(empty.body, { _tag: "NothingToUpdate", message: "Give a nickname or an email to change" })
      assert.deepStrictEqual(yield* writes, before)
      assert.deepStrictEqual(yield* api.members.getMember({ path }), member)
    }).pipe(Effect.provide(TestLive)))

  it.live("deleting writes MemberDeleted; then update, delete and login answer 410 and the subject signs up anew", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("leaving") })
      const path = { memberId: member.memberId }
      const deleted = yield* api.members.deleteMember({ path })
      assert.strictEqual(deleted.status, "DELETED")
      assert.isDefined(deleted.deletedAt)
      assert.isTrue(DateTime.Equivalence(deleted.deletedAt!, deleted.updatedAt))
      assert.isTrue(DateTime.greaterThan(deleted.updatedAt, member.updatedAt))

      const [, row] = yield* outboxRows
      assert.strictEqual(row!.eventType, "MemberDeleted")
      assert.strictEqual(row!.messageKey, String(member.memberId))
      const event = decodeMemberEvent(row!.payload)
      assert.deepStrictEqual(
        event,
        new MemberEvents.MemberDeleted({
          eventId: event.eventId,
          memberId: member.memberId,
          occurredAt: deleted.updatedAt,
          deletedAt: deleted.deletedAt!
        })
      )
      const stored = yield* memberRow(member.memberId)
      assert.strictEqual(stored.status, "DELETED")
      assert.strictEqual(stored.deletedAt?.getTime(), DateTime.toEpochMillis(deleted.deletedAt!))

      const before = yield* writes
      const gone = [
        yield* api.members.updateProfile({ path, payload: new UpdateProfileRequest({ nickname: "Back" }) }).pipe(
          Effect.flip
        ),
        yield* api.members.deleteMember({ path }).pipe(Effect.flip),
        yield* api.members.login({ path }).pipe(Effect.flip)
      ]
      for (const error of gone) {
        assert.strictEqual(error._tag, "MemberGone")
        if (error._tag === "MemberGone") assert.isTrue(DateTime.Equivalence(error.deletedAt!, deleted.deletedAt!))
      }
      const status = yield* RawHttp.request(
        "POST",
        `/api/members/${member.memberId}/login`,
        undefined,
        bearer(api.tokenOf(member.memberId))
      )
      assert.strictEqual(status.status, 410)
      assert.deepStrictEqual(yield* writes, before)
      assert.deepStrictEqual(yield* api.members.getMember({ path }), deleted)

      const again = yield* api.members.signIn({ payload: signInRequest("leaving") })
      assert.isTrue(again.created)
      assert.notStrictEqual(again.member.memberId, member.memberId)
      assert.strictEqual((yield* outboxRows).at(-1)!.eventType, "MemberCreated")
    }).pipe(Effect.provide(TestLive)))

  it.live("login opens a session and writes LoginSucceeded with the seed's event id", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("logging-in") })
      const first = yield* api.members.login({ path: { memberId: member.memberId } })
      const second = yield* api.members.login({ path: { memberId: member.memberId } })
      assert.strictEqual(first.memberId, member.memberId)
      assert.notStrictEqual(first.sessionId, second.sessionId)
      assert.match(first.sessionId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)

      const sessions = yield* sql<{ sessionId: string; memberId: string; createdAt: Date }>`
        SELECT session_id, member_id, created_at FROM sessions ORDER BY created_at, session_id`
      assert.deepStrictEqual(
        new Set(sessions.map((s) => s.sessionId)),
        new Set([first.sessionId, second.sessionId])
      )
      for (const s of sessions) assert.strictEqual(s.memberId, String(member.memberId))

      const logins = (yield* outboxRows).filter((row) => row.topic === "auth.login.events")
      assert.strictEqual(logins.length, 2)
      const firstRow = logins.find((row) => decodeLoginEvent(row.payload).sessionId === first.sessionId)!
      const event = decodeLoginEvent(firstRow.payload)
      const millis = DateTime.toEpochMillis(first.loggedInAt)
      assert.strictEqual(event.eventId, `login:${member.memberId}:${first.sessionId}:${millis}`)
      assert.strictEqual(firstRow.eventId, event.eventId)
      assert.strictEqual(firstRow.eventType, "LoginSucceeded")
      assert.strictEqual(firstRow.messageKey, String(member.memberId))
      assert.deepStrictEqual(
        event,
        LoginEvents.LoginSucceeded.fromLogin({
          accountId: event.accountId,
          sessionId: first.sessionId,
          occurredAt: first.loggedInAt
        })
      )
      assert.strictEqual(Number(event.accountId), Number(member.memberId))
      assert.strictEqual(
        sessions.find((s) => s.sessionId === first.sessionId)!.createdAt.getTime(),
        millis
      )
      // A login changes no member: no member event, and the member's updatedAt stays.
      assert.strictEqual((yield* outboxRows).filter((row) => row.topic === "member-events").length, 1)
      assert.deepStrictEqual(yield* api.members.getMember({ path: { memberId: member.memberId } }), member)
    }).pipe(Effect.provide(TestLive)))

  it.live("bad input answers 4xx with a typed body and writes no row and no event", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("target") })
      const before = yield* writes
      const id = member.memberId
      const auth = bearer(api.tokenOf(id))
      const valid = JSON.stringify({ provider: "google", subject: "new-subject", nickname: "Bob" })

      const cases: ReadonlyArray<readonly [string, ReturnType<typeof RawHttp.request>]> = [
        ["malformed JSON sign-in", RawHttp.request("POST", "/api/auth/sign-in", valid.slice(0, -3))],
        ["empty sign-in body", RawHttp.request("POST", "/api/auth/sign-in", "")],
        ["JSON that is not an object", RawHttp.request("POST", "/api/auth/sign-in", "[1, 2]")],
        [
          "empty nickname",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), nickname: "" }))
        ],
        [
          "padded nickname",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), nickname: " Bob " }))
        ],
        [
          "numeric subject",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), subject: 42 }))
        ],
        [
          "missing provider",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ subject: "x", nickname: "Bob" }))
        ],
        [
          "bad email",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), email: "nope" }))
        ],
        [
          "NUL in nickname",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), nickname: "Bo\u0000b" }))
        ],
        [
          "NUL in subject",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), subject: "x\u0000" }))
        ],
        [
          "lone surrogate in subject",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), subject: "s\ud800" }))
        ],
        [
          "lone surrogate in nickname",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), nickname: "\udc00" }))
        ],
        [
          "NUL in email",
          RawHttp.request("POST", "/api/auth/sign-in", JSON.stringify({ ...JSON.parse(valid), email: "a\u0000@b.io" }))
        ],
        ["malformed JSON update", RawHttp.request("PATCH", `/api/members/${id}`, "{\"nickname\": ", auth)],
        [
          "line break in nickname update",
          RawHttp.request("PATCH", `/api/members/${id}`, JSON.stringify({ nickname: "Bob\nSmith" }), auth)
        ],
        [
          "empty nickname update",
          RawHttp.request("PATCH", `/api/members/${id}`, JSON.stringify({ nickname: "" }), auth)
        ],
        [
          "numeric nickname update",
          RawHttp.request("PATCH", `/api/members/${id}`, JSON.stringify({ nickname: 7 }), auth)
        ],
        ["null email update", RawHttp.request("PATCH", `/api/members/${id}`, JSON.stringify({ email: null }), auth)],
        [
          "non-numeric path id",
          RawHttp.request("PATCH", "/api/members/abc", JSON.stringify({ nickname: "Bob" }), auth)
        ],
        ["fractional path id", RawHttp.request("DELETE", "/api/members/1.5", undefined, auth)],
        ["negative path id", RawHttp.request("POST", "/api/members/-1/login", undefined, auth)],
        ["zero path id", RawHttp.request("GET", "/api/members/0")],
        ["unknown member get", RawHttp.request("GET", `/api/members/${id + 1000}`)],
        [
          "unknown member update",
          RawHttp.request("PATCH", `/api/members/${id + 1000}`, JSON.stringify({ nickname: "Bob" }), auth)
        ],
        ["unknown member delete", RawHttp.request("DELETE", `/api/members/${id + 1000}`, undefined, auth)],
        ["unknown member login", RawHttp.request("POST", `/api/members/${id + 1000}/login`, undefined, auth)]
      ]
      // Another member's path with one's own token is refused before the member is even looked up.
      const expectedOf = (name: string) =>
        name === "unknown member get"
          ? ["MemberNotFound", 404] as const
          : name.startsWith("unknown member")
          ? ["Forbidden", 403] as const
          : ["HttpApiDecodeError", 400] as const
      for (const [name, request] of cases) {
        const response = yield* request
        assert.isTrue(response.status >= 400 && response.status < 500, `${name}: status ${response.status}`)
        const [tag, status] = expectedOf(name)
        assert.strictEqual(response.tag, tag, `${name}: body ${JSON.stringify(response.body)}`)
        assert.strictEqual(response.status, status, name)
      }
      const malformed = yield* RawHttp.request("POST", "/api/auth/sign-in", "{")
      assert.match((malformed.body as { message: string }).message, /not valid JSON/)

      const typed = yield* api.members.getMember({ path: { memberId: member.memberId } }).pipe(
        Effect.zipRight(api.members.login({ path: { memberId: (id + 1000) as typeof id } })),
        Effect.flip
      )
      assert.strictEqual(typed._tag, "Unauthenticated")

      assert.deepStrictEqual(yield* writes, before)
    }).pipe(Effect.provide(TestLive)))

  it.live("a member's update, deletion and login need that member's session token: 401 without, 403 with another's", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("guarded") })
      const { member: other } = yield* api.members.signIn({ payload: signInRequest("intruder") })
      const id = member.memberId
      const before = yield* writes
      const attempts = (headers: Record<string, string> | undefined) => [
        RawHttp.request("PATCH", `/api/members/${id}`, JSON.stringify({ nickname: "Mallory" }), headers),
        RawHttp.request("DELETE", `/api/members/${id}`, undefined, headers),
        RawHttp.request("POST", `/api/members/${id}/login`, undefined, headers)
      ]
      const expectations: ReadonlyArray<readonly [string, Record<string, string> | undefined, number, string]> = [
        ["no token", undefined, 401, "Missing"],
        ["empty bearer", { authorization: "Bearer " }, 401, "Missing"],
        ["unknown token", bearer("x".repeat(43)), 401, "Invalid"],
        ["not a bearer", { authorization: `Basic ${api.tokenOf(id)}` }, 401, "Invalid"],
        ["another member's token", bearer(api.tokenOf(other.memberId)), 403, "Forbidden"]
      ]
      for (const [name, headers, status, reason] of expectations) {
        for (const attempt of attempts(headers)) {
          const answer = yield* attempt
          assert.strictEqual(answer.status, status, `${name}: ${JSON.stringify(answer.body)}`)
          if (status === 401) assert.deepInclude(answer.body, { _tag: "Unauthenticated", reason }, name)
          else assert.strictEqual(answer.tag, "Forbidden", name)
        }
      }
      yield* sql`UPDATE member_tokens SET expires_at = now() - interval '1 second' WHERE member_id = ${id}`
      for (const attempt of attempts(bearer(api.tokenOf(id)))) {
        assert.deepInclude((yield* attempt).body, { _tag: "Unauthenticated", reason: "Expired" })
      }
      assert.deepStrictEqual(yield* writes, before)
      assert.strictEqual((yield* api.members.getMember({ path: { memberId: id } })).nickname, "Alice")

      // Tokens are stored hashed: the table holds no token text.
      const stored = yield* sql<{ tokenHash: Uint8Array }>`SELECT token_hash FROM member_tokens WHERE member_id = ${id}`
      assert.strictEqual(stored[0]!.tokenHash.length, 32)
      assert.notInclude(Buffer.from(stored[0]!.tokenHash).toString("base64url"), api.tokenOf(id))
    }).pipe(Effect.provide(TestLive)))
})
