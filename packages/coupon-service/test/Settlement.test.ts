import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { CouponEvents, Ids } from "@kpipe/events"
import { Producer } from "@kpipe/kafka"
import { Redis } from "@kpipe/redis"
import { FaultProxy } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import { Config } from "../src/Config.ts"
import { IssuePublisher } from "../src/IssuePublisher.ts"
import { StockReservations } from "../src/StockReservations.ts"
import {
  behindRedisProxy,
  committed,
  createCoupon,
  eventually,
  issue,
  issuedUsers,
  issueStatus,
  keysOf,
  readTopic,
  reconciliation,
  testEnv,
  TestLive
} from "./utils.ts"

const requestEvent = (couponId: Ids.CouponId, userId: Ids.UserId) =>
  Effect.map(DateTime.now, (now) =>
    new CouponEvents.CouponIssueRequested({
      eventId: Ids.EventId.make(crypto.randomUUID()),
      occurredAt: now,
      couponId,
      userId,
      timestamp: DateTime.toEpochMillis(now)
    }))

const gate = (couponId: number, userId: number) =>
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

describe("settling requests", () => {
  it.live(
    "a dead-lettered request delivered again releases nothing more: the user's newer reservation stays",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const config = yield* Config
        const reservations = yield* StockReservations
        const publisher = yield* IssuePublisher
        const producer = yield* Producer.Producer
        // A coupon the database does not have: its request is dead-lettered at once.
        const couponId = Ids.CouponId.make(434_343)
        const userId = Ids.UserId.make(5)
        yield* reservations.initialize(couponId, 10)
        const first = yield* requestEvent(couponId, userId)
        assert.strictEqual((yield* reservations.reserve(couponId, userId, first.eventId))._tag, "Accepted")
        yield* publisher.publish(first)
        const dlq = config.topics.requests.deadLetter.name
        yield* eventually(Effect.map(committed(config.topics.dlqReleaseGroup, dlq), (n) => n === 1))
        yield* eventually(Effect.map(gate(couponId, userId), (state) => state.status === "FAILED"))
        assert.deepStrictEqual(yield* gate(couponId, userId), {
          counter: "0",
          members: [],
          pending: {},
          status: "FAILED"
        })

        // The user asks again and holds a new reservation.
        const second = yield* requestEvent(couponId, userId)
        assert.strictEqual((yield* reservations.reserve(couponId, userId, second.eventId))._tag, "Accepted")
        const reserved = yield* gate(couponId, userId)
        assert.deepStrictEqual(reserved, {
          counter: "1",
          members: ["5"],
          pending: { "5": second.eventId },
          status: "PENDING"
        })

        // The first dead letter arrives once more (a redelivery), byte for byte.
        const [letter] = yield* readTopic(dlq, 1)
        yield* producer.send({
          topic: dlq,
          messages: [{ key: letter!.key, value: letter!.value, headers: letter!.headers }]
        })
        yield* eventually(Effect.map(committed(config.topics.dlqReleaseGroup, dlq), (n) => n === 2))
        assert.deepStrictEqual(yield* gate(couponId, userId), reserved)
        const failures = yield* sql<{ eventId: string }>`SELECT event_id::text FROM coupon_issue_failures`
        assert.deepStrictEqual(failures.map((row) => row.eventId), [first.eventId])
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )

  it.live(
    "a publish the API gave up on but the broker stored is still issued, and Redis adopts the user back",
    () =>
      Effect.gen(function*() {
        const reservations = yield* StockReservations
        const publisher = yield* IssuePublisher
        const coupon = yield* createCoupon(2)
        const userId = Ids.UserId.make(9)
        const event = yield* requestEvent(coupon.couponId, userId)
        // What the request path does when the publish times out: reserve, then roll back...
        assert.strictEqual((yield* reservations.reserve(coupon.couponId, userId, event.eventId))._tag, "Accepted")
        yield* reservations.rollback(coupon.couponId, userId, event.eventId)
        assert.deepStrictEqual(yield* gate(coupon.couponId, userId), {
          counter: "0",
          members: [],
          pending: {},
          status: null
        })
        // ...while the broker had stored the event after all.
        yield* publisher.publish(event)

        yield* eventually(
          Effect.map(issueStatus(coupon.couponId, userId), (answer) => answer.body["status"] === "ISSUED")
        )
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))], [userId])
        yield* eventually(Effect.map(gate(coupon.couponId, userId), (state) => state.counter === "1"))
        assert.deepStrictEqual(yield* gate(coupon.couponId, userId), {
          counter: "1",
          members: ["9"],
          pending: {},
          status: "ISSUED"
        })
        assert.strictEqual((yield* issue(coupon.couponId, userId)).tag, "AlreadyRequested")
        assert.strictEqual((yield* issue(coupon.couponId, 10)).tag, "Accepted")
        assert.strictEqual((yield* issue(coupon.couponId, 11)).tag, "CouponSoldOut")
        yield* eventually(Effect.map(issuedUsers(coupon.couponId), (users) => users.size === 2))
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )

  it.live(
    "the status query answers from the database when Redis lost the outcome or does not answer",
    () =>
      behindRedisProxy(TestLive, (proxy) =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const coupon = yield* createCoupon(5)
          const keys = yield* keysOf(coupon.couponId)
          assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
          yield* eventually(Effect.map(issuedUsers(coupon.couponId), (users) => users.has(1)))
          yield* eventually(Effect.map(gate(coupon.couponId, 1), (state) => state.status === "ISSUED"))

          // The consumer's Redis update after COMMIT was lost: Redis still says PENDING.
          yield* redis.use((c) => c.set(keys.status(1), "PENDING"))
          assert.strictEqual((yield* issueStatus(coupon.couponId, 1)).body["status"], "ISSUED")
          assert.strictEqual((yield* gate(coupon.couponId, 1)).status, "ISSUED")

          // The status key expired or was evicted.
          yield* redis.use((c) => c.del(keys.status(1)))
          assert.strictEqual((yield* issueStatus(coupon.couponId, 1)).body["status"], "ISSUED")

          // Redis does not answer: issuing is refused, the status still comes from the database.
          const answers = yield* proxy.during(
            FaultProxy.cut,
            Effect.all([issue(coupon.couponId, 2), issueStatus(coupon.couponId, 1), issueStatus(coupon.couponId, 3)])
          )
          assert.deepStrictEqual(answers.map((answer) => `${answer.status} ${answer.body["status"] ?? answer.tag}`), [
            "503 ServiceUnavailable",
            "200 ISSUED",
            "200 NOT_REQUESTED"
          ])
        })),
    { timeout: 60_000 }
  )
})
