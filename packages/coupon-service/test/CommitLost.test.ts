import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "../src/App.ts"
import { Config } from "../src/Config.ts"
import * as Topics from "../src/Topics.ts"
import {
  Admin,
  type Answer,
  committed,
  createCoupon,
  deleteKeys,
  eventually,
  issue,
  issuedUsers,
  keysOf,
  RequestPathLive,
  testEnv
} from "./utils.ts"

const issueRetrying = (couponId: number, userId: number, seen: Array<Answer>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 150; attempt++) {
      const answer = yield* issue(couponId, userId)
      seen.push(answer)
      if (answer.tag !== "CouponRecovering") return answer
      yield* Effect.sleep("100 millis")
    }
    return answer503
  })

const answer503: Answer = { status: 503, tag: "CouponRecovering", body: {} }

describe("a rebuild after the consumer group's last offset commit was lost", () => {
  it.live(
    "the database shows the records applied: the coupon reopens without a rebalance or a new commit",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const admin = yield* Admin.Admin
        const group = config.topics.issueGroup
        const topic = config.topics.requests.name
        yield* Layer.build(Topics.layer)
        const coupon = yield* createCoupon(3)

        // The consumer group issues user 1's request and commits it, then stops.
        yield* Effect.gen(function*() {
          yield* Layer.build(App.consumer)
          assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
          yield* eventually(Effect.map(committed(group, topic), (n) => n === 1), "30 seconds", "committed")
        }).pipe(Effect.scoped)
        // As if that last commit had failed: the group's offsets are back before the applied record,
        // and no member will commit them again (no new record comes for a closed coupon).
        yield* admin.resetOffsets(group, topic)
        assert.strictEqual(yield* committed(group, topic), 0)
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))], [1])

        const keys = yield* keysOf(coupon.couponId)
        assert.isAbove(yield* deleteKeys(`${keys.meta.slice(0, -"meta".length)}*`), 2)
        const started = Date.now()
        const seen: Array<Answer> = []
        const second = yield* issueRetrying(coupon.couponId, 2, seen)
        assert.strictEqual(seen[0]!.tag, "CouponRecovering")
        assert.strictEqual(second.tag, "Accepted", "reopened")
        // Well within one RECOVERY_TIMEOUT (5 s): no timed-out rebuild in between.
        assert.isBelow(Date.now() - started, 5_000)

        assert.strictEqual(yield* committed(group, topic), 0, "nothing committed meanwhile")
        assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "AlreadyRequested")
        assert.strictEqual((yield* issue(coupon.couponId, 3)).tag, "Accepted")
        assert.strictEqual((yield* issue(coupon.couponId, 4)).tag, "CouponSoldOut")
      }).pipe(
        Effect.scoped,
        Effect.provide(RequestPathLive),
        Effect.withConfigProvider(testEnv({ RECOVERY_TIMEOUT: "5 seconds" }).provider)
      ),
    { timeout: 90_000 }
  )
})
