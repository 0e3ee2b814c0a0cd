import { assert, describe, it } from "@effect/vitest"
import { CouponEvents, Ids } from "@kpipe/events"
import { Redis } from "@kpipe/redis"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { CouponStore } from "../src/CouponStore.ts"
import { StockReservations } from "../src/StockReservations.ts"
import {
  type Answer,
  createCoupon,
  deleteKeys,
  eventually,
  issuedCount,
  issuedUsers,
  issueRetrying,
  issueStatus,
  keysOf,
  reconciliation,
  tally,
  testEnv,
  TestLive
} from "./utils.ts"

describe("Redis loses the coupon's state", () => {
  it.live(
    "keys deleted mid-sale: the gate closes, rebuilds from the database after the consumer caught up, and the sale goes on without overselling",
    () =>
      Effect.gen(function*() {
        const quantity = 100
        const coupon = yield* createCoupon(quantity)
        const keys = yield* keysOf(coupon.couponId)
        const users = Array.from({ length: 1_500 }, (_, i) => i + 1)
        const seen: Array<Answer> = []
        const halfway = yield* Deferred.make<void>()
        let accepted = 0

        const sale = yield* Effect.forEach(users, (userId) =>
          Effect.map(issueRetrying(coupon.couponId, userId, seen), (answer) => {
            if (answer.tag === "Accepted" && ++accepted === quantity / 2) {
              Deferred.unsafeDone(halfway, Effect.void)
            }
            return [userId, answer] as const
          }), { concurrency: 50 }).pipe(Effect.fork)

        // Half the stock is taken, requests are still in flight, and Redis forgets the coupon.
        yield* Deferred.await(halfway)
        const deleted = yield* deleteKeys(`${keys.meta.slice(0, -"meta".length)}*`)
        assert.isAbove(deleted, 3)
        const answers = yield* Fiber.join(sale)

        // Users who got the coupon before the loss ask again: Redis knows them again.
        const early = answers.filter(([, answer]) =>
          answer.tag === "Accepted"
        ).slice(0, 20).map(([userId]) =>
          userId
        )
        const again = yield* Effect.forEach(early, (userId) => issueRetrying(coupon.couponId, userId, seen))
        assert.isTrue(again.every((answer) => answer.tag === "AlreadyRequested"), JSON.stringify(tally(again)))

        const counts = tally(answers.map(([, answer]) => answer))
        assert.deepStrictEqual(counts, { Accepted: quantity, CouponSoldOut: users.length - quantity })
        assert.isAbove(seen.filter((answer) => answer.tag === "CouponRecovering").length, 0)

        yield* eventually(Effect.map(issuedCount(coupon.couponId), (n) => n >= quantity), "60 seconds")
        const winners = answers.filter(([, answer]) => answer.tag === "Accepted").map(([userId]) => userId)
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))].sort(), winners.sort())
        const states = yield* Effect.forEach(winners, (userId) => issueStatus(coupon.couponId, userId), {
          concurrency: 50
        })
        assert.isTrue(states.every((state) => state.body["status"] === "ISSUED"))
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
        assert.deepStrictEqual(report.body["redis"], {
          state: "ready",
          counter: quantity,
          members: quantity,
          pending: 0
        })
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 120_000 }
  )

  it.live(
    "a state another Redis server built (a snapshot restored, a replica promoted: consistent but older) is rebuilt before it sells",
    () =>
      Effect.gen(function*() {
        const redis = yield* Redis.Redis
        const coupon = yield* createCoupon(3)
        const keys = yield* keysOf(coupon.couponId)
        const seen: Array<Answer> = []
        assert.strictEqual((yield* issueRetrying(coupon.couponId, 1, seen)).tag, "Accepted")
        yield* eventually(Effect.map(issuedCount(coupon.couponId), (n) => n === 1))
        const stateKeys = [keys.meta, keys.counter, keys.users]
        // The snapshot: user 1 issued. Then user 2 is issued, which the snapshot does not know.
        const snapshot = yield* redis.use((client) => Promise.all(stateKeys.map((key) => client.dumpBuffer(key))))
        assert.strictEqual((yield* issueRetrying(coupon.couponId, 2, seen)).tag, "Accepted")
        yield* eventually(Effect.map(issuedCount(coupon.couponId), (n) => n === 2))
        // The server comes back with the snapshot (its counter matches its set) and a new run_id:
        // the state says it was built on a server that is not the one answering.
        yield* redis.use(async (client) => {
          for (const [i, key] of stateKeys.entries()) await client.restore(key, 0, snapshot[i]!, "REPLACE")
          await client.hset(keys.meta, "server", "0000000000000000000000000000000000000000")
        })
        // One unit is left: three users ask for it, one at a time.
        const answers = yield* Effect.forEach([3, 4, 5], (userId) => issueRetrying(coupon.couponId, userId, seen))
        assert.deepStrictEqual(answers.map((answer) => answer.tag), ["Accepted", "CouponSoldOut", "CouponSoldOut"])
        assert.isTrue(seen.some((answer) => answer.tag === "CouponRecovering"), "rebuilt")
        yield* eventually(Effect.map(issuedCount(coupon.couponId), (n) => n === 3))
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))].sort(), [1, 2, 3])
        assert.strictEqual((yield* reconciliation(coupon.couponId)).body["consistent"], true)
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )

  it.live(
    "a coupon whose keys are all gone before its sale starts is rebuilt on the first request",
    () =>
      Effect.gen(function*() {
        const coupon = yield* createCoupon(2)
        const keys = yield* keysOf(coupon.couponId)
        yield* deleteKeys(`${keys.meta.slice(0, -"meta".length)}*`)
        const seen: Array<Answer> = []
        const first = yield* issueRetrying(coupon.couponId, 1, seen)
        assert.strictEqual(first.tag, "Accepted")
        assert.strictEqual(seen[0]!.tag, "CouponRecovering")
        assert.strictEqual(seen[0]!.status, 503)
        assert.strictEqual((yield* issueRetrying(coupon.couponId, 2, seen)).tag, "Accepted")
        assert.strictEqual((yield* issueRetrying(coupon.couponId, 3, seen)).tag, "CouponSoldOut")
        yield* eventually(Effect.map(issuedCount(coupon.couponId), (n) => n === 2))
        assert.strictEqual((yield* reconciliation(coupon.couponId)).body["consistent"], true)
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )

  it.live(
    "a request still pending in Redis that the database failed is shown FAILED once the coupon is rebuilt",
    () =>
      Effect.gen(function*() {
        const redis = yield* Redis.Redis
        const store = yield* CouponStore
        const reservations = yield* StockReservations
        const coupon = yield* createCoupon(5)
        const keys = yield* keysOf(coupon.couponId)
        const now = yield* DateTime.now
        const event = new CouponEvents.CouponIssueRequested({
          eventId: Ids.EventId.make(crypto.randomUUID()),
          occurredAt: now,
          couponId: coupon.couponId,
          userId: Ids.UserId.make(7),
          timestamp: DateTime.toEpochMillis(now)
        })
        assert.strictEqual((yield* reservations.reserve(coupon.couponId, event.userId, event.eventId))._tag, "Accepted")
        // The request failed for good in the database, and Redis never heard of it.
        yield* store.recordFailure(event, "DEAD_LETTERED", "refused")
        // Redis damages the coupon's counter: the next request closes the gate and rebuilds it.
        yield* redis.use((client) => client.set(keys.counter, 4))
        const seen: Array<Answer> = []
        assert.strictEqual((yield* issueRetrying(coupon.couponId, 8, seen)).tag, "Accepted")
        assert.strictEqual(seen[0]!.tag, "CouponRecovering")

        assert.deepStrictEqual(
          yield* redis.use(async (client) => [await client.hget(keys.pending, "7"), await client.get(keys.status(7))]),
          [null, "FAILED"]
        )
        const status = yield* issueStatus(coupon.couponId, 7)
        assert.deepStrictEqual([status.body["status"], status.body["reason"]], ["FAILED", "DEAD_LETTERED"])
        assert.strictEqual((yield* issueRetrying(coupon.couponId, 7, seen)).tag, "Accepted")
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )
})
