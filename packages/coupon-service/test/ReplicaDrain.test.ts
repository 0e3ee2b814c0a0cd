import { assert, describe, it } from "@effect/vitest"
import { Ids } from "@kpipe/events"
import { Redis } from "@kpipe/redis"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { Config, config as configValues } from "../src/Config.ts"
import { CouponIssuer } from "../src/CouponIssuer.ts"
import { IssuePublisher } from "../src/IssuePublisher.ts"
import { ReservationRecovery } from "../src/ReservationRecovery.ts"
import { StockReservations } from "../src/StockReservations.ts"
import {
  type Answer,
  createCoupon,
  deleteKeys,
  eventually,
  issue,
  issuedUsers,
  issueRetrying,
  issueStatus,
  keysOf,
  reconciliation,
  tally,
  testEnv,
  TestLive
} from "./utils.ts"

/**
 * A second API replica (its own issuer, publisher and rebuilder, sharing Redis, the database and
 * Kafka) whose publishes wait for `gate` before they go to Kafka: a broker path that is slow for it.
 */
const replicaWithHeldPublisher = (gate: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const held = Layer.effect(
      IssuePublisher,
      Effect.map(IssuePublisher, (real) =>
        IssuePublisher.make({
          ...real,
          publish: (event) => Effect.zipRight(Deferred.await(gate), real.publish(event))
        }))
    ).pipe(Layer.provide(Layer.fresh(IssuePublisher.Default)))
    const context = yield* Layer.build(
      Layer.fresh(CouponIssuer.Default).pipe(Layer.provide(Layer.merge(held, Layer.fresh(ReservationRecovery.Default))))
    )
    return Context.get(context, CouponIssuer)
  })

describe("a Redis-loss rebuild with two API replicas", () => {
  it.live(
    "waits for the requests the other replica accepted and has not published yet: no oversell, every 202 ISSUED, nothing counted twice",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const redis = yield* Redis.Redis
        const quantity = 30
        const coupon = yield* createCoupon(quantity)
        const couponId = coupon.couponId
        const keys = yield* keysOf(couponId)
        const gate = yield* Deferred.make<void>()
        const b = yield* replicaWithHeldPublisher(gate)

        // Replica B accepts five requests; their publishes wait.
        const heldUsers = [1, 2, 3, 4, 5]
        const heldAnswers = yield* Effect.forEach(
          heldUsers,
          (userId) => Effect.either(b.issue(couponId, Ids.UserId.make(userId))),
          { concurrency: "unbounded" }
        ).pipe(Effect.fork)
        yield* eventually(
          Effect.map(redis.use((c) => c.hlen(keys.pending)), (n) => n === heldUsers.length),
          "20 seconds",
          "B's reservations"
        )

        // Replica A (the service under test) sells ten, which the consumer issues.
        const early = Array.from({ length: 10 }, (_, i) => 101 + i)
        const earlyAnswers = yield* Effect.forEach(early, (userId) => issue(couponId, userId))
        assert.deepStrictEqual(tally(earlyAnswers), { Accepted: early.length })
        yield* eventually(Effect.map(issuedUsers(couponId), (users) => users.size === early.length), "30 seconds")

        // Redis loses everything (the replicas' registry too); the sale goes on through A.
        assert.isAbove(yield* deleteKeys(`${config.keyPrefix}*`), 10)
        const seen: Array<Answer> = []
        const late = Array.from({ length: 60 }, (_, i) => 201 + i)
        const sale = yield* Effect.forEach(
          late,
          (userId) => Effect.map(issueRetrying(couponId, userId, seen), (answer) => [userId, answer] as const),
          { concurrency: 20 }
        ).pipe(Effect.fork)

        // The rebuild has begun; B's publishes stay held for 3 s more, longer than a rebuild takes.
        yield* eventually(
          Effect.sync(() => seen.some((answer) => answer.tag === "CouponRecovering")),
          "20 seconds",
          "the coupon closed"
        )
        yield* Effect.sleep("3 seconds")
        yield* Deferred.succeed(gate, undefined)
        const held = yield* Fiber.join(heldAnswers)
        const lateAnswers = yield* Fiber.join(sale)

        const heldAccepted = heldUsers.filter((_, i) => Either.isRight(held[i]!))
        assert.deepStrictEqual(heldAccepted, heldUsers, "B's requests were all queued")
        const lateAccepted = lateAnswers.filter(([, answer]) => answer.tag === "Accepted").map(([userId]) => userId)
        const accepted = [...heldAccepted, ...early, ...lateAccepted]
        assert.deepStrictEqual(
          tally(lateAnswers.map(([, answer]) => answer)),
          { Accepted: quantity - early.length - heldUsers.length, CouponSoldOut: late.length - lateAccepted.length },
          "202s beyond the stock are an oversell"
        )
        assert.strictEqual(accepted.length, quantity)

        // Every 202 ends ISSUED: none FAILED (a unit sold twice), none lost.
        yield* eventually(
          Effect.map(issuedUsers(couponId), (users) => users.size === quantity),
          "60 seconds",
          "all issued"
        )
        assert.deepStrictEqual([...(yield* issuedUsers(couponId))].sort(), [...accepted].sort())
        const states = yield* Effect.forEach(accepted, (userId) => issueStatus(couponId, userId), { concurrency: 20 })
        assert.deepStrictEqual(tally(states.map((state) => ({ ...state, tag: String(state.body["status"]) }))), {
          ISSUED: quantity
        })
        yield* eventually(
          Effect.map(reconciliation(couponId), (report) => report.body["consistent"] === true),
          "30 seconds",
          "Redis and the database agree"
        )
        const report = yield* reconciliation(couponId)
        assert.deepStrictEqual(report.body["redis"], {
          state: "ready",
          counter: quantity,
          members: quantity,
          pending: 0
        })
        assert.deepStrictEqual(report.body["db"], { issuedQuantity: quantity, userCoupons: quantity, failures: 0 })
      }).pipe(Effect.scoped, Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 120_000 }
  )

  it.live(
    "a replica that renews its registration but never answers holds the coupon closed until RECOVERY_TIMEOUT; once it stops renewing it counts as dead after REPLICA_LEASE",
    () =>
      Effect.gen(function*() {
        const redis = yield* Redis.Redis
        const reservations = yield* StockReservations
        const coupon = yield* createCoupon(3)
        const couponId = coupon.couponId
        const keys = yield* keysOf(couponId)
        assert.strictEqual((yield* issue(couponId, 1)).tag, "Accepted")
        yield* eventually(Effect.map(issuedUsers(couponId), (users) => users.size === 1), "30 seconds")

        // A replica that is alive (it renews every 100 ms) but stuck: it never answers a rebuild.
        const ghost = yield* reservations.heartbeat("ghost").pipe(
          Effect.repeat(Schedule.spaced("100 millis")),
          Effect.fork
        )
        assert.isAbove(yield* deleteKeys(`${keys.meta.slice(0, -"meta".length)}*`), 2)
        assert.strictEqual((yield* issue(couponId, 2)).tag, "CouponRecovering")
        const closed = Date.now()
        const state = redis.use((c) => c.hget(keys.meta, "state"))
        yield* Effect.sleep("3 seconds")
        assert.strictEqual(yield* state, "recovering", "still waiting for the live replica")
        assert.strictEqual((yield* issue(couponId, 2)).tag, "CouponRecovering")
        // RECOVERY_TIMEOUT (4 s): the rebuild gives up and its lease back.
        yield* eventually(Effect.map(redis.use((c) => c.get(keys.lease)), (lease) => lease === null), "10 seconds")
        assert.isAtLeast(Date.now() - closed, 3_500)

        // The replica dies: after REPLICA_LEASE (1 s) it is no longer waited for.
        yield* Fiber.interrupt(ghost)
        const seen: Array<Answer> = []
        assert.strictEqual((yield* issueRetrying(couponId, 2, seen)).tag, "Accepted")
        assert.strictEqual((yield* issue(couponId, 1)).tag, "AlreadyRequested")
        yield* eventually(
          Effect.map(reconciliation(couponId), (report) => report.body["consistent"] === true),
          "30 seconds",
          "Redis and the database agree"
        )
      }).pipe(
        Effect.provide(TestLive),
        Effect.withConfigProvider(testEnv({ RECOVERY_TIMEOUT: "4 seconds" }).provider)
      ),
    { timeout: 90_000 }
  )

  it.effect("REPLICA_LEASE must outlast REPLICA_HEARTBEAT", () =>
    Effect.gen(function*() {
      const rejected = yield* Effect.either(
        Effect.withConfigProvider(
          configValues,
          testEnv({ REPLICA_HEARTBEAT: "2 seconds", REPLICA_LEASE: "1 second" }).provider
        )
      )
      assert.isTrue(Either.isLeft(rejected))
      assert.include(
        String(Either.isLeft(rejected) ? rejected.left : ""),
        "REPLICA_LEASE must be longer than REPLICA_HEARTBEAT"
      )
      const accepted = yield* Effect.withConfigProvider(configValues, testEnv().provider)
      assert.strictEqual(Duration.toMillis(accepted.replicaLease), 1_000)
    }))
})
