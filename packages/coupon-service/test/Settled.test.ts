import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import { CouponStore } from "../src/CouponStore.ts"
import { StoresLive, testEnv } from "./utils.ts"

describe("CouponStore.settled", () => {
  it.live(
    "an event both dead-lettered and issued (a redriven letter applied) is ISSUED: it holds a unit",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const store = yield* CouponStore
        const now = yield* DateTime.now
        const coupon = yield* store.create({
          name: "settled",
          totalQuantity: 5,
          validFrom: now,
          validUntil: DateTime.add(now, { hours: 1 })
        })
        const [both, failed, issued, unknown] = Array.from({ length: 4 }, () => crypto.randomUUID())
        yield* sql`
        INSERT INTO coupon_issue_failures (event_id, coupon_id, user_id, reason)
        VALUES (${both!}, ${coupon.couponId}, 1, 'DEAD_LETTERED'), (${failed!}, ${coupon.couponId}, 2, 'SOLD_OUT')`
        yield* sql`
        INSERT INTO user_coupons (coupon_id, user_id, event_id)
        VALUES (${coupon.couponId}, 1, ${both!}), (${coupon.couponId}, 3, ${issued!})`
        const settled = yield* store.settled(coupon.couponId, [both!, failed!, issued!, unknown!])
        assert.deepStrictEqual(
          Object.fromEntries(settled),
          { [both!]: "ISSUED", [failed!]: "FAILED", [issued!]: "ISSUED" }
        )
      }).pipe(Effect.provide(StoresLive), Effect.withConfigProvider(testEnv({}).provider)),
    60_000
  )
})
