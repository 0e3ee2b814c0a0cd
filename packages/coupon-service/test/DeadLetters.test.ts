import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { CouponEvents, Ids } from "@kpipe/events"
import { AlertSink } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { IssuePublisher } from "../src/IssuePublisher.ts"
import { StockReservations } from "../src/StockReservations.ts"
import { createCoupon, eventually, issue, issueStatus, keysOf, reconciliation, serviceWith, testEnv } from "./utils.ts"

const recordingAlerts = () => {
  const alerts: Array<AlertSink.Alert> = []
  const layer = Layer.succeed(
    AlertSink.AlertSink,
    AlertSink.AlertSink.of({ alert: (alert) => Effect.sync(() => void alerts.push(alert)) })
  )
  return { alerts, layer }
}

const gateState = (couponId: number, userId: number) =>
  Effect.gen(function*() {
    const redis = yield* Redis.Redis
    const keys = yield* keysOf(couponId)
    return yield* redis.use(async (c) => ({
      counter: await c.get(keys.counter),
      members: await c.smembers(keys.users),
      pending: await c.hgetall(keys.pending),
      status: await c.get(keys.status(userId))
    }))
  })

/** Until the scope's database drops it, inserting a coupon for user 7 fails (a SqlError that is not the infrastructure's). */
const refuseUser7 = Effect.flatMap(SqlClient, (sql) =>
  Effect.zipRight(
    sql`
      CREATE FUNCTION refuse_user_7() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.user_id = 7 THEN RAISE EXCEPTION 'user 7 cannot hold coupons right now'; END IF;
        RETURN NEW;
      END $$`,
    sql`CREATE TRIGGER refuse_user_7 BEFORE INSERT ON user_coupons FOR EACH ROW EXECUTE FUNCTION refuse_user_7()`
  ))

/** The user's request ends FAILED (DEAD_LETTERED) and its unit is back in Redis. */
const settledDeadLettered = (couponId: number, userId: number) =>
  Effect.gen(function*() {
    yield* eventually(
      Effect.map(issueStatus(couponId, userId), (answer) => answer.body["status"] === "FAILED"),
      "30 seconds",
      `user ${userId}'s dead letter settled FAILED`
    )
    assert.strictEqual((yield* issueStatus(couponId, userId)).body["reason"], "DEAD_LETTERED")
    yield* eventually(Effect.map(gateState(couponId, userId), (state) => state.counter === "0"))
    assert.deepStrictEqual(yield* gateState(couponId, userId), {
      counter: "0",
      members: [],
      pending: {},
      status: "FAILED"
    })
  })

describe("requests that cannot be applied", () => {
  const sqlFailure = recordingAlerts()
  it.live(
    "a request that keeps failing is dead-lettered after its retries: FAILED for the user, stock released, failure stored and alerted; a later request succeeds",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const coupon = yield* createCoupon(3)
        yield* refuseUser7

        const accepted = yield* issue(coupon.couponId, 7)
        assert.strictEqual(accepted.tag, "Accepted")
        yield* settledDeadLettered(coupon.couponId, 7)
        const stored = yield* sql<{ errorTag: string; attempts: number }>`
          SELECT error_tag, attempts FROM kpipe_failed_events`
        assert.deepStrictEqual(stored, [{ errorTag: "SqlError", attempts: 2 }])
        const [failure] = yield* sql<{ reason: string }>`SELECT reason FROM coupon_issue_failures WHERE user_id = 7`
        assert.strictEqual(failure!.reason, "DEAD_LETTERED")
        yield* eventually(Effect.sync(() => sqlFailure.alerts.length > 0))
        assert.strictEqual(sqlFailure.alerts[0]!.severity, "critical")
        assert.include(sqlFailure.alerts[0]!.title, "SqlError")

        yield* sql`DROP TRIGGER refuse_user_7 ON user_coupons`
        const again = yield* issue(coupon.couponId, 7)
        assert.strictEqual(again.tag, "Accepted")
        yield* eventually(Effect.map(issueStatus(coupon.couponId, 7), (answer) => answer.body["status"] === "ISSUED"))
        assert.strictEqual((yield* reconciliation(coupon.couponId)).body["consistent"], true)
      }).pipe(
        Effect.provide(serviceWith(sqlFailure.layer)),
        Effect.withConfigProvider(testEnv({ CONSUMER_MAX_RETRIES: "1" }).provider)
      ),
    { timeout: 90_000 }
  )

  const poison = recordingAlerts()
  it.live(
    "a dead letter the release cannot store (a coupon id beyond the INTEGER column) does not hold up the ones after it: the next is settled FAILED and its unit released",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const publisher = yield* IssuePublisher
        const coupon = yield* createCoupon(3)
        yield* refuseUser7

        // Decodes (a coupon id is a positive Int), but no row of `coupons.id` (INTEGER) can hold it,
        // nor of `coupon_issue_failures.coupon_id`: the release cannot store its failure, ever.
        const now = yield* DateTime.now
        const outOfRange = new CouponEvents.CouponIssueRequested({
          eventId: Ids.EventId.make(crypto.randomUUID()),
          occurredAt: now,
          couponId: Ids.CouponId.make(3_000_000_000),
          userId: Ids.UserId.make(99),
          timestamp: DateTime.toEpochMillis(now)
        })
        yield* publisher.publish(outOfRange)
        yield* eventually(
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_failed_events`,
            (rows) => rows[0]!.n === 1
          ),
          "30 seconds",
          "the out-of-range request dead-lettered"
        )

        // Dead-lettered after it, on the dead-letter topic's one partition.
        assert.strictEqual((yield* issue(coupon.couponId, 7)).tag, "Accepted")
        yield* settledDeadLettered(coupon.couponId, 7)
        const failures = yield* sql<{ userId: string; reason: string }>`
          SELECT user_id::text AS user_id, reason FROM coupon_issue_failures ORDER BY failed_at`
        assert.deepStrictEqual(failures, [{ userId: "7", reason: "DEAD_LETTERED" }])
        // The out-of-range request is a coupon the database does not have, dead-lettered at once; its
        // dead letter stays in the failed-events table for an operator.
        const stored = yield* sql<{ eventId: string; errorTag: string; attempts: number }>`
          SELECT event_id, error_tag, attempts FROM kpipe_failed_events ORDER BY id`
        assert.deepStrictEqual(stored[0], { eventId: outOfRange.eventId, errorTag: "CouponMissing", attempts: 1 })
        assert.deepStrictEqual(stored.slice(1).map((row) => row.errorTag), ["SqlError"])
      }).pipe(
        Effect.provide(serviceWith(poison.layer)),
        Effect.withConfigProvider(testEnv({ CONSUMER_MAX_RETRIES: "1" }).provider)
      ),
    { timeout: 90_000 }
  )

  const missing = recordingAlerts()
  it.live(
    "a request for a coupon the database does not have is dead-lettered at once and its reservation released",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const reservations = yield* StockReservations
        const publisher = yield* IssuePublisher
        const couponId = Ids.CouponId.make(424_242)
        const userId = Ids.UserId.make(5)
        yield* reservations.initialize(couponId, 10)
        const now = yield* DateTime.now
        const event = new CouponEvents.CouponIssueRequested({
          eventId: Ids.EventId.make(crypto.randomUUID()),
          occurredAt: now,
          couponId,
          userId,
          timestamp: DateTime.toEpochMillis(now)
        })
        const reserved = yield* reservations.reserve(couponId, userId, event.eventId)
        assert.strictEqual(reserved._tag, "Accepted")
        yield* publisher.publish(event)

        yield* eventually(
          Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_failed_events`, (rows) => rows[0]!.n === 1)
        )
        const [stored] = yield* sql<{ errorTag: string; attempts: number }>`
        SELECT error_tag, attempts FROM kpipe_failed_events`
        assert.deepStrictEqual(stored, { errorTag: "CouponMissing", attempts: 1 })
        assert.deepStrictEqual(yield* gateState(couponId, userId), {
          counter: "0",
          members: [],
          pending: {},
          status: "FAILED"
        })
        yield* eventually(Effect.sync(() => missing.alerts.length > 0))
        yield* eventually(
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM coupon_issue_failures`,
            (rows) => rows[0]!.n === 1
          )
        )
      }).pipe(Effect.provide(serviceWith(missing.layer)), Effect.withConfigProvider(testEnv().provider)),
    {
      timeout: 60_000
    }
  )
})
