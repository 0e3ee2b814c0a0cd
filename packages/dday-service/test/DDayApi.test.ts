import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { assert, layer } from "@effect/vitest"
import { DDayApi, Members } from "@kpipe/contracts"
import { DDays, Http, MemberCopies, Migrations } from "@kpipe/dday-service"
import { Ids } from "@kpipe/events"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, RawHttp, TestLogging } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import { gatewayClient } from "./utils.ts"

const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(Http.layer),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(Layer.mergeAll(DDays.DDays.Default, MemberCopies.MemberCopies.Default)),
  Layer.provideMerge(Database.layerTest(Migrations.all)),
  Layer.provideMerge(TestLogging.layer)
)

const client = gatewayClient()

const member = (memberId: number, status: Members.MemberStatus = "ACTIVE") =>
  Effect.flatMap(MemberCopies.MemberCopies, (copies) =>
    copies.putState({
      memberId: Ids.MemberId.make(memberId),
      nickname: `member-${memberId}`,
      email: undefined,
      status,
      sourceUpdatedAt: DateTime.unsafeMake(Date.UTC(2030, 0, 1))
    }))

const id = (n: number) => Ids.MemberId.make(n)

/** Today (UTC) moved by `days`, as `YYYY-MM-DD`. */
const dayFromToday = (days: number) =>
  DDayApi.LocalDate.make(DateTime.formatIsoDateUtc(DateTime.add(DateTime.unsafeNow(), { days })))

layer(ServerLive, { timeout: "60 seconds", excludeTestServices: true })("DDayApi", (it) => {
  it.effect("creates, lists with the days remaining, and deletes a member's D-Days", () =>
    Effect.gen(function*() {
      yield* member(1)
      const api = yield* client
      const soon = yield* api.ddays.create({
        path: { memberId: id(1) },
        payload: { title: "exam", targetDate: dayFromToday(10) }
      })
      assert.deepInclude(soon, { memberId: id(1), title: "exam", daysRemaining: 10, label: "D-10" })
      const today = yield* api.ddays.create({
        path: { memberId: id(1) },
        payload: { title: "today", targetDate: dayFromToday(0) }
      })
      yield* api.ddays.create({ path: { memberId: id(1) }, payload: { title: "past", targetDate: dayFromToday(-3) } })

      const list = yield* api.ddays.list({ path: { memberId: id(1) } })
      assert.deepStrictEqual(list.ddays.map((d) => [d.title, d.daysRemaining, d.label]), [
        ["past", -3, "D+3"],
        ["today", 0, "D-Day"],
        ["exam", 10, "D-10"]
      ])

      yield* api.ddays.remove({ path: { memberId: id(1), ddayId: today.id } })
      const again = yield* api.ddays.remove({ path: { memberId: id(1), ddayId: today.id } }).pipe(Effect.flip)
      assert.deepStrictEqual(again, new DDayApi.DDayNotFound({ memberId: id(1), ddayId: today.id }))
      assert.deepStrictEqual(
        (yield* api.ddays.list({ path: { memberId: id(1) } })).ddays.map((d) => d.title),
        ["past", "exam"]
      )
      // Another member cannot delete it.
      yield* member(2)
      const foreign = yield* api.ddays.remove({ path: { memberId: id(2), ddayId: soon.id } }).pipe(Effect.flip)
      assert.strictEqual(foreign._tag, "DDayNotFound")
    }))

  it.effect("unknown member: typed 404; deleted member: typed 410", () =>
    Effect.gen(function*() {
      const api = yield* client
      const payload = { title: "x", targetDate: dayFromToday(1) }
      const unknown = yield* api.ddays.create({ path: { memberId: id(404) }, payload }).pipe(Effect.flip)
      assert.deepStrictEqual(unknown, new Members.MemberNotFound({ memberId: id(404) }))
      assert.strictEqual(
        (yield* api.ddays.list({ path: { memberId: id(404) } }).pipe(Effect.flip))._tag,
        "MemberNotFound"
      )
      assert.strictEqual(
        (yield* api.members.getMember({ path: { memberId: id(404) } }).pipe(Effect.flip))._tag,
        "MemberNotFound"
      )

      yield* member(3, "DELETED")
      const gone = yield* api.ddays.create({ path: { memberId: id(3) }, payload }).pipe(Effect.flip)
      assert.deepStrictEqual(gone, new Members.MemberGone({ memberId: id(3) }))
      assert.strictEqual((yield* api.ddays.list({ path: { memberId: id(3) } }).pipe(Effect.flip))._tag, "MemberGone")
      assert.strictEqual(
        (yield* RawHttp.request("POST", "/api/members/3/ddays", JSON.stringify(payload), { "x-user-id": "3" })).status,
        410
      )
      assert.strictEqual(
        (yield* RawHttp.request("POST", "/api/members/404/ddays", JSON.stringify(payload), { "x-user-id": "404" }))
          .status,
        404
      )

      const reference = yield* api.members.getMember({ path: { memberId: id(3) } })
      assert.deepInclude(reference, { memberId: id(3), nickname: "member-3", status: "DELETED" })
    }))

  it.effect("bad input is a typed 400 HttpApiDecodeError", () =>
    Effect.gen(function*() {
      yield* member(5)
      const cases: ReadonlyArray<readonly [method: "POST" | "GET" | "DELETE", path: string, body?: string]> = [
        ["POST", "/api/members/5/ddays", "{not json"],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: 5, targetDate: "2031-01-01" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "", targetDate: "2031-01-01" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "x".repeat(101), targetDate: "2031-01-01" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "a\u0000b", targetDate: "2031-01-01" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "x", targetDate: "2031-02-30" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "x", targetDate: "0000-01-01" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "x", targetDate: "01/02/2031" })],
        ["POST", "/api/members/5/ddays", JSON.stringify({ title: "x" })],
        ["POST", "/api/members/abc/ddays", JSON.stringify({ title: "x", targetDate: "2031-01-01" })],
        ["GET", "/api/members/-1/ddays"],
        ["GET", "/api/members/1.5"],
        ["DELETE", "/api/members/5/ddays/0"]
      ]
      for (const [method, path, body] of cases) {
        const response = yield* RawHttp.request(method, path, body, { "x-user-id": "5" })
        assert.strictEqual(response.status, 400, `${method} ${path} ${body}`)
        assert.strictEqual(response.tag, "HttpApiDecodeError", `${method} ${path} ${body}`)
      }
      assert.deepStrictEqual(
        (yield* client.pipe(Effect.flatMap((api) => api.ddays.list({ path: { memberId: id(5) } })))).ddays,
        []
      )
    }))

  it.effect("a member's D-Days and copy only for the gateway's user of that id: 401 without X-User-Id, 403 for another user", () =>
    Effect.gen(function*() {
      yield* member(7)
      const body = JSON.stringify({ title: "mine", targetDate: "2031-01-01" })
      const cases: ReadonlyArray<readonly [Record<string, string> | undefined, number, string]> = [
        [undefined, 401, "MissingUserId"],
        [{ "x-user-id": "abc" }, 400, "InvalidUserId"],
        [{ "x-user-id": "8" }, 403, "Forbidden"]
      ]
      for (const [headers, status, tag] of cases) {
        for (
          const [method, path] of [
            ["POST", "/api/members/7/ddays"],
            ["GET", "/api/members/7/ddays"],
            ["DELETE", "/api/members/7/ddays/1"],
            ["GET", "/api/members/7"]
          ] as const
        ) {
          const answer = yield* RawHttp.request(method, path, method === "POST" ? body : undefined, headers)
          assert.deepStrictEqual(
            [answer.status, answer.tag],
            [status, tag],
            `${method} ${path} ${JSON.stringify(headers)}`
          )
        }
      }
      const api = yield* client
      assert.deepStrictEqual((yield* api.ddays.list({ path: { memberId: id(7) } })).ddays, [])
    }))

  it.prop(
    "labels count down to D-Day and up after it",
    { days: FastCheck.integer({ min: -40_000, max: 40_000 }) },
    ({ days }) => {
      const today = "2030-03-01"
      const target = new Date(Date.parse(`${today}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10)
      const remaining = DDays.daysBetween(today, target)
      assert.strictEqual(remaining, days)
      assert.strictEqual(DDays.label(remaining), days > 0 ? `D-${days}` : days === 0 ? "D-Day" : `D+${-days}`)
    }
  )

  it.effect("without its database: answers 503 ServiceUnavailable, not 500", () =>
    Effect.gen(function*() {
      const api = yield* gatewayClient()
      const memberId = Ids.MemberId.make(1)
      yield* DatabaseFaults.cutOff

      const list = yield* api.ddays.list({ path: { memberId } }).pipe(Effect.flip)
      assert.strictEqual(list._tag, "ServiceUnavailable")
      const copy = yield* api.members.getMember({ path: { memberId } }).pipe(Effect.flip)
      assert.strictEqual(copy._tag, "ServiceUnavailable")
      const raw = yield* RawHttp.request("DELETE", "/api/members/1/ddays/1", undefined, { "x-user-id": "1" })
      assert.strictEqual(raw.status, 503)
      assert.strictEqual(raw.tag, "ServiceUnavailable")
      // Its own database: the file's tests run concurrently, and a cut-off shared one failed them.
    }).pipe(Effect.provide(ServerLive)), { timeout: 30_000 })
})
