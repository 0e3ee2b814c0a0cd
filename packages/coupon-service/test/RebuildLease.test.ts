import { assert, describe, it } from "@effect/vitest"
import { Redis } from "@kpipe/redis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as App from "../src/App.ts"
import { Config } from "../src/Config.ts"
import { ReservationRecovery } from "../src/ReservationRecovery.ts"
import { StockReservations } from "../src/StockReservations.ts"
import * as Topics from "../src/Topics.ts"
import {
  committed,
  createCoupon,
  deleteKeys,
  eventually,
  issue,
  keysOf,
  reconciliation,
  RequestPathLive,
  testEnv
} from "./utils.ts"

/** Another replica's rebuilder (its own instance, sharing Redis, the database and Kafka); records its log lines. */
const replica = Effect.gen(function*() {
  const lines: Array<string> = []
  const recorder = Logger.make(({ message }) => {
    lines.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  const context = yield* Layer.build(Layer.fresh(ReservationRecovery.Default)).pipe(
    // Locally: each replica's runtime keeps its own logger, and the test's fiber keeps its own.
    Effect.locallyWith(FiberRef.currentLoggers, () => HashSet.make(recorder)),
    Logger.withMinimumLogLevel(LogLevel.Info)
  )
  const rebuilding = () => lines.filter((line) => line.includes("rebuilding it from the database")).length
  const failed = () => lines.filter((line) => line.includes("Rebuilding the coupon failed")).length
  const rebuilt = () => lines.filter((line) => line.includes("Coupon state rebuilt from the database")).length
  return { context, rebuilding, failed, rebuilt }
})

describe("the rebuild lease", () => {
  it.live(
    "one replica rebuilds at a time; a rebuild that cannot finish releases its lease and another replica takes over",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const redis = yield* Redis.Redis
        const reservations = yield* StockReservations
        yield* Layer.build(Topics.layer)
        const coupon = yield* createCoupon(3)
        const keys = yield* keysOf(coupon.couponId)
        // An accepted request no consumer has applied: a rebuild must wait for the group to catch up.
        assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
        assert.strictEqual(yield* committed(config.topics.issueGroup, config.topics.requests.name), 0)
        assert.isAbove(yield* deleteKeys(`${keys.meta.slice(0, -"meta".length)}*`), 2)

        const a = yield* replica
        const b = yield* replica
        const lease = redis.use((c) => c.get(keys.lease))
        const state = redis.use((c) => c.hget(keys.meta, "state"))

        yield* Effect.provide(Effect.flatMap(ReservationRecovery, (r) => r.trigger(coupon.couponId)), a.context)
        yield* eventually(Effect.map(lease, (token) => token !== null), "10 seconds", "replica A's lease")
        const tokenA = yield* lease
        const ttl = yield* redis.use((c) => c.pttl(keys.lease))
        assert.isAbove(ttl, Duration.toMillis(config.recoveryTimeout))
        assert.strictEqual(yield* state, "recovering")
        yield* eventually(Effect.sync(() => a.rebuilding() === 1), "5 seconds", "A's rebuild under way")

        // While A holds the lease, nobody else starts: not B, not the serving replica.
        assert.strictEqual(
          yield* reservations.beginRecovery(coupon.couponId, "replica-b", Duration.seconds(30)),
          "BUSY"
        )
        assert.strictEqual((yield* issue(coupon.couponId, 2)).tag, "CouponRecovering")
        assert.strictEqual(yield* lease, tokenA)

        // The consumer group is down, so A's rebuild times out: it gives its lease back, well before it expires.
        const started = Date.now()
        // RECOVERY_TIMEOUT (3 s): released in about 3 s; the lease would expire after ~13 s.
        yield* eventually(Effect.map(lease, (token) => token === null), "8 seconds", "A's lease released")
        assert.isBelow(Date.now() - started, ttl - 4_000)
        assert.strictEqual(a.failed(), 1)
        assert.strictEqual(a.rebuilt(), 0)
        assert.strictEqual(yield* state, "recovering")

        // With the consumers back and caught up, B takes the lease and finishes.
        yield* Layer.build(App.consumer)
        yield* eventually(
          Effect.map(committed(config.topics.issueGroup, config.topics.requests.name), (n) => n === 1),
          "30 seconds",
          "the consumer group caught up"
        )
        yield* Effect.provide(Effect.flatMap(ReservationRecovery, (r) => r.trigger(coupon.couponId)), b.context)
        yield* eventually(Effect.sync(() => b.rebuilt() === 1), "20 seconds", "B's rebuild")
        assert.strictEqual(b.rebuilding(), 1)
        assert.strictEqual(a.rebuilding(), 1)
        assert.strictEqual(yield* state, "ready")
        assert.isNull(yield* lease)
        assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "AlreadyRequested")
        assert.strictEqual((yield* issue(coupon.couponId, 2)).tag, "Accepted")
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
      }).pipe(
        Effect.scoped,
        Effect.provide(RequestPathLive),
        Effect.withConfigProvider(testEnv({ RECOVERY_TIMEOUT: "3 seconds" }).provider)
      ),
    { timeout: 90_000 }
  )
})
