import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { CouponEvents } from "@kpipe/events"
import { Redis } from "@kpipe/redis"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Config } from "../src/Config.ts"
import {
  adminToken,
  client,
  createClosedCoupons,
  createCoupon,
  eventually,
  issue,
  issuedCount,
  issueStatus,
  keysOf,
  readTopic,
  reconciliation,
  send,
  testEnv,
  TestLive
} from "./utils.ts"

const decodeEvent = Schema.decodeUnknownSync(Schema.parseJson(CouponEvents.CouponIssueRequested))

describe("issuing a coupon", () => {
  it.live("an accepted request is published exactly once, then ISSUED", () =>
    Effect.gen(function*() {
      const config = yield* Config
      const coupon = yield* createCoupon(10)
      const accepted = yield* issue(coupon.couponId, 42)
      assert.strictEqual(accepted.status, 202)
      assert.strictEqual(accepted.body["status"], "PENDING")

      const records = yield* readTopic(config.topics.requests.name, 1)
      assert.strictEqual(records.length, 1)
      const [record] = records
      const event = decodeEvent(record!.value!.toString("utf8"))
      assert.strictEqual(event.eventId, accepted.body["eventId"])
      assert.strictEqual(event.couponId, coupon.couponId)
      assert.strictEqual(event.userId, 42)
      assert.strictEqual(record!.key!.toString(), String(coupon.couponId))
      assert.strictEqual(record!.headers["kpipe-event-id"], event.eventId)

      yield* eventually(Effect.map(issueStatus(coupon.couponId, 42), (answer) => answer.body["status"] === "ISSUED"))
      assert.strictEqual(yield* issuedCount(coupon.couponId), 1)
      const mine = yield* (yield* client({ userId: "42" })).coupons.myCoupons()
      assert.deepStrictEqual(mine.coupons.map((c) => [c.couponId, c.status]), [[coupon.couponId, "AVAILABLE"]])

      const again = yield* issue(coupon.couponId, 42)
      assert.deepStrictEqual([again.status, again.tag], [409, "AlreadyRequested"])
      const report = yield* reconciliation(coupon.couponId)
      assert.strictEqual(report.body["consistent"], true)
      assert.deepStrictEqual(report.body["redis"], { state: "ready", counter: 1, members: 1, pending: 0 })
    }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)), { timeout: 60_000 })

  it.live("bad input is answered with typed 4xx errors, each with its own status", () =>
    Effect.gen(function*() {
      const now = yield* DateTime.now
      const open = yield* createCoupon(5)
      const { expired, future } = yield* createClosedCoupons
      const answers = {
        unknownCoupon: yield* issue(999_999, 1),
        beyondIntegerCoupon: yield* issue(2_147_483_648, 1),
        largestSafeCoupon: yield* issue(Number.MAX_SAFE_INTEGER, 1),
        expired: yield* issue(expired.couponId, 1),
        notYetOpen: yield* issue(future.couponId, 1),
        malformedCoupon: yield* issue("abc", 1),
        zeroCoupon: yield* issue(0, 1),
        negativeCoupon: yield* issue(-3, 1),
        fractionCoupon: yield* issue("1.5", 1),
        missingUser: yield* issue(open.couponId, undefined),
        emptyUser: yield* issue(open.couponId, ""),
        textUser: yield* issue(open.couponId, "bob"),
        zeroUser: yield* issue(open.couponId, "0"),
        negativeUser: yield* issue(open.couponId, "-7"),
        hugeUser: yield* issue(open.couponId, "99999999999999999999"),
        statusUnknown: yield* issueStatus(999_999, 1),
        statusBeyondIntegerCoupon: yield* issueStatus(2_147_483_648, 1),
        statusMissingUser: yield* issueStatus(open.couponId, undefined)
      }
      const seen = Object.fromEntries(Object.entries(answers).map(([name, a]) => [name, [a.status, a.tag]]))
      assert.deepStrictEqual(seen, {
        unknownCoupon: [404, "CouponNotFound"],
        beyondIntegerCoupon: [404, "CouponNotFound"],
        largestSafeCoupon: [404, "CouponNotFound"],
        expired: [403, "CouponExpired"],
        notYetOpen: [425, "CouponNotYetOpen"],
        malformedCoupon: [400, "HttpApiDecodeError"],
        zeroCoupon: [400, "HttpApiDecodeError"],
        negativeCoupon: [400, "HttpApiDecodeError"],
        fractionCoupon: [400, "HttpApiDecodeError"],
        missingUser: [401, "MissingUserId"],
        emptyUser: [401, "MissingUserId"],
        textUser: [400, "InvalidUserId"],
        zeroUser: [400, "InvalidUserId"],
        negativeUser: [400, "InvalidUserId"],
        hugeUser: [400, "InvalidUserId"],
        statusUnknown: [404, "CouponNotFound"],
        statusBeyondIntegerCoupon: [404, "CouponNotFound"],
        statusMissingUser: [401, "MissingUserId"]
      })

      const createRaw = (token: string | undefined, body: unknown) =>
        send(
          HttpClientRequest.post("/api/admin/coupons").pipe(
            (request) => token === undefined ? request : HttpClientRequest.bearerToken(request, token),
            HttpClientRequest.bodyUnsafeJson(body)
          )
        )
      const valid = {
        name: "x",
        totalQuantity: 1,
        validFrom: DateTime.formatIso(now),
        validUntil: DateTime.formatIso(DateTime.add(now, { hours: 1 }))
      }
      const admin = {
        noToken: yield* createRaw(undefined, valid),
        wrongToken: yield* createRaw("guess", valid),
        zeroQuantity: yield* createRaw(adminToken, { ...valid, totalQuantity: 0 }),
        textQuantity: yield* createRaw(adminToken, { ...valid, totalQuantity: "ten" }),
        backwards: yield* createRaw(adminToken, { ...valid, validUntil: valid.validFrom }),
        beforeYear1: yield* createRaw(adminToken, { ...valid, validFrom: "-005000-01-01T00:00:00Z" }),
        yearZero: yield* createRaw(adminToken, { ...valid, validFrom: "0000-06-01T00:00:00Z" }),
        afterYear9999: yield* createRaw(adminToken, { ...valid, validUntil: "+010000-01-01T00:00:00Z" }),
        notJson: yield* send(
          HttpClientRequest.post("/api/admin/coupons").pipe(
            HttpClientRequest.bearerToken(adminToken),
            HttpClientRequest.bodyText("{oops", "application/json")
          )
        ),
        reconciliationNoToken: yield* send(HttpClientRequest.get(`/api/admin/coupons/${open.couponId}/reconciliation`)),
        reconciliationUnknown: yield* reconciliation(999_999),
        reconciliationBeyondInteger: yield* reconciliation(2_147_483_648),
        created: yield* createRaw(adminToken, valid),
        widest: yield* createRaw(adminToken, {
          ...valid,
          validFrom: "0001-01-01T00:00:00Z",
          validUntil: "9999-12-31T23:59:59.999Z"
        })
      }
      const adminSeen = Object.fromEntries(Object.entries(admin).map(([name, a]) => [name, [a.status, a.tag]]))
      assert.deepStrictEqual(adminSeen, {
        noToken: [401, "Unauthorized"],
        wrongToken: [401, "Unauthorized"],
        zeroQuantity: [400, "HttpApiDecodeError"],
        textQuantity: [400, "HttpApiDecodeError"],
        backwards: [400, "HttpApiDecodeError"],
        beforeYear1: [400, "HttpApiDecodeError"],
        yearZero: [400, "HttpApiDecodeError"],
        afterYear9999: [400, "HttpApiDecodeError"],
        notJson: [400, "HttpApiDecodeError"],
        reconciliationNoToken: [401, "Unauthorized"],
        reconciliationUnknown: [404, "CouponNotFound"],
        reconciliationBeyondInteger: [404, "CouponNotFound"],
        created: [201, "Ok"],
        widest: [201, "Ok"]
      })
      assert.deepStrictEqual(admin.beforeYear1.body["issues"], [
        { _tag: "Refinement", path: ["validFrom"], message: "must be between the years 1 and 9999" }
      ])
      assert.deepStrictEqual([admin.widest.body["validFrom"], admin.widest.body["validUntil"]], [
        "0001-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z"
      ])

      // The typed client sees the same errors as values.
      const typed = yield* client({ userId: "1" })
      const error = yield* typed.coupons.issue({ path: { couponId: expired.couponId } }).pipe(Effect.flip)
      assert.strictEqual(error._tag, "CouponExpired")
      const anonymous = yield* client()
      const anonymousError = yield* anonymous.coupons.myCoupons().pipe(Effect.flip)
      assert.strictEqual(anonymousError._tag, "MissingUserId")
    }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)), { timeout: 60_000 })

  it.live(
    "the database never oversells even when Redis lets too many through: the extra requests FAIL visibly",
    () =>
      Effect.gen(function*() {
        const redis = yield* Redis.Redis
        const coupon = yield* createCoupon(5)
        const keys = yield* keysOf(coupon.couponId)
        // Redis believes there are 8.
        yield* redis.use((c) => c.hset(keys.meta, "total", 8))
        const answers = yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], (userId) => issue(coupon.couponId, userId), {
          concurrency: "unbounded"
        })
        assert.isTrue(answers.every((answer) => answer.status === 202))
        const settled = (userId: number) =>
          Effect.map(issueStatus(coupon.couponId, userId), (answer) => answer.body["status"] as string)
        yield* eventually(Effect.map(
          Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], settled),
          (states) => states.every((state) => state === "ISSUED" || state === "FAILED")
        ))
        const states = yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], (userId) => issueStatus(coupon.couponId, userId))
        assert.strictEqual(states.filter((s) => s.body["status"] === "ISSUED").length, 5)
        const failed = states.filter((s) => s.body["status"] === "FAILED")
        assert.strictEqual(failed.length, 3)
        assert.isTrue(failed.every((s) => s.body["reason"] === "SOLD_OUT"))
        assert.strictEqual(yield* issuedCount(coupon.couponId), 5)
        const sql = yield* SqlClient
        const [row] = yield* sql<
          { issuedQuantity: number }
        >`SELECT issued_quantity FROM coupons WHERE id = ${coupon.couponId}`
        assert.strictEqual(row!.issuedQuantity, 5)
        // The failed reservations went back to Redis; the drift in the quantity is reported.
        const report = yield* reconciliation(coupon.couponId)
        assert.deepStrictEqual(report.body["redis"], { state: "ready", counter: 5, members: 5, pending: 0 })
        assert.deepStrictEqual((report.body["drift"] as Array<{ kind: string }>).map((d) => d.kind), ["TOTAL_MISMATCH"])
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )
})
