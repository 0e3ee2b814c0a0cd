import { assert, describe, it } from "@effect/vitest"

import { TopicAdmin } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "../src/App.ts"
import { Config } from "../src/Config.ts"
import {
  createCoupon,
  eventually,
  issue,
  issueStatus,
  keysOf,
  reconciliation,
  RequestPathLive,
  testEnv
} from "./utils.ts"

describe("publishing fails", () => {
  it.live(
    "the reservation is rolled back in full, the answer is a typed 503, and a later retry succeeds",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const redis = yield* Redis.Redis
        const coupon = yield* createCoupon(3)
        const keys = yield* keysOf(coupon.couponId)
        const snapshot = redis.use(async (c) => ({
          counter: await c.get(keys.counter),
          members: await c.smembers(keys.users),
          pending: await c.hgetall(keys.pending),
          status: await c.get(keys.status(7))
        }))
        const before = yield* snapshot

        // The requests topic does not exist yet: the producer gives up after PUBLISH_RETRIES.
        const failed = yield* issue(coupon.couponId, 7)
        assert.deepStrictEqual([failed.status, failed.tag], [503, "PublishFailed"])
        assert.deepStrictEqual(before, { counter: "0", members: [], pending: {}, status: null })
        assert.deepStrictEqual(yield* snapshot, before)
        const status = yield* issueStatus(coupon.couponId, 7)
        assert.strictEqual(status.body["status"], "NOT_REQUESTED")

        yield* TopicAdmin.create([config.topics.requests])
        yield* Layer.build(App.consumer)
        const accepted = yield* issue(coupon.couponId, 7)
        assert.deepStrictEqual([accepted.status, accepted.tag], [202, "Accepted"])
        yield* eventually(Effect.map(issueStatus(coupon.couponId, 7), (answer) => answer.body["status"] === "ISSUED"))
        const after = yield* snapshot
        assert.deepStrictEqual([after.counter, after.members, after.pending, after.status], ["1", ["7"], {}, "ISSUED"])
        assert.strictEqual((yield* reconciliation(coupon.couponId)).body["consistent"], true)
      }).pipe(
        Effect.scoped,
        Effect.provide(RequestPathLive),
        Effect.withConfigProvider(testEnv({ PUBLISH_RETRIES: "1" }).provider)
      ),
    { timeout: 90_000 }
  )
})
