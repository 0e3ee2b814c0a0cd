import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { CouponEvents, Ids } from "@kpipe/events"
import { Redis } from "@kpipe/redis"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as App from "../src/App.ts"
import { Config } from "../src/Config.ts"
import { IssuePublisher } from "../src/IssuePublisher.ts"
import * as ReservationReclaimer from "../src/ReservationReclaimer.ts"
import { StockReservations } from "../src/StockReservations.ts"
import * as Topics from "../src/Topics.ts"
import {
  committed,
  createCoupon,
  eventually,
  issue,
  issuedUsers,
  issueStatus,
  keysOf,
  reconciliation,
  RequestPathLive,
  startProcess,
  testEnv,
  TestLive
} from "./utils.ts"

// Reservations older than 3 s may be reclaimed (time for a test's first steps on a loaded machine), looked for every 200 ms.
const env = () => testEnv({ RESERVATION_RECLAIM_AGE: "3 seconds", RESERVATION_RECLAIM_INTERVAL: "200 millis" })
const shared = env()

/** What a process that died right after the Redis gate accepted leaves behind: a reservation, no record. */
const reserveOnly = (couponId: Ids.CouponId, userId: number) =>
  Effect.gen(function*() {
    const reservations = yield* StockReservations
    const eventId = Ids.EventId.make(crypto.randomUUID())
    const answer = yield* reservations.reserve(couponId, Ids.UserId.make(userId), eventId)
    assert.strictEqual(answer._tag, "Accepted")
    return eventId
  })

/** The record of that request, published late (a send that was still under way somewhere). */
const publishLate = (couponId: Ids.CouponId, userId: number, eventId: Ids.EventId) =>
  Effect.gen(function*() {
    const publisher = yield* IssuePublisher
    const now = yield* DateTime.now
    yield* publisher.publish(
      new CouponEvents.CouponIssueRequested({
        eventId,
        occurredAt: now,
        couponId,
        userId: Ids.UserId.make(userId),
        timestamp: DateTime.toEpochMillis(now)
      })
    )
  })

const gate = (couponId: number) =>
  Effect.gen(function*() {
    const redis = yield* Redis.Redis
    const keys = yield* keysOf(couponId)
    return yield* redis.use(async (c) => ({
      counter: await c.get(keys.counter),
      members: (await c.smembers(keys.users)).sort(),
      pending: await c.hgetall(keys.pending),
      since: await c.zrange(keys.since, 0, -1)
    }))
  })

const failures = (couponId: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ eventId: string; userId: string; reason: string }>`
      SELECT event_id::text AS event_id, user_id::text AS user_id, reason
      FROM coupon_issue_failures WHERE coupon_id = ${couponId} ORDER BY user_id`)

const statusOf = (couponId: number, userId: number) =>
  Effect.map(issueStatus(couponId, userId), (answer) => ({
    status: answer.body["status"],
    reason: answer.body["reason"]
  }))

const failedNotQueued = (couponId: number, userId: number) =>
  Effect.map(statusOf(couponId, userId), ({ reason, status }) => status === "FAILED" && reason === "NOT_QUEUED")

describe("reservations whose request never reached Kafka", () => {
  it.live(
    "are released: the user reads FAILED (NOT_QUEUED) instead of PENDING for ever, may ask again, and the unit sells to someone else",
    () =>
      Effect.gen(function*() {
        const coupon = yield* createCoupon(3)
        const lost1 = yield* reserveOnly(coupon.couponId, 1)
        const lost5 = yield* reserveOnly(coupon.couponId, 5)
        assert.strictEqual((yield* issue(coupon.couponId, 2)).tag, "Accepted")
        assert.strictEqual((yield* issue(coupon.couponId, 3)).tag, "CouponSoldOut")
        const again = yield* issue(coupon.couponId, 1)
        assert.deepStrictEqual([again.status, again.tag], [409, "AlreadyRequested"])
        assert.strictEqual((yield* statusOf(coupon.couponId, 1)).status, "PENDING")

        // Released well within the age plus a few passes (the consumer has to pass the topic's end first).
        const started = Date.now()
        yield* eventually(failedNotQueued(coupon.couponId, 1), "30 seconds", "user 1 FAILED as NOT_QUEUED")
        yield* eventually(failedNotQueued(coupon.couponId, 5), "10 seconds", "user 5 FAILED as NOT_QUEUED")
        assert.isBelow(Date.now() - started, 20_000)
        assert.deepStrictEqual(yield* failures(coupon.couponId), [
          { eventId: lost1, userId: "1", reason: "NOT_QUEUED" },
          { eventId: lost5, userId: "5", reason: "NOT_QUEUED" }
        ])

        // The two units are back on sale: someone else buys one, user 1 asks again and gets the other.
        assert.strictEqual((yield* issue(coupon.couponId, 3)).tag, "Accepted")
        assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
        assert.strictEqual((yield* issue(coupon.couponId, 4)).tag, "CouponSoldOut")
        yield* eventually(Effect.map(issuedUsers(coupon.couponId), (users) => users.size === 3))
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))].sort(), [1, 2, 3])
        for (const userId of [1, 2, 3]) {
          yield* eventually(Effect.map(statusOf(coupon.couponId, userId), ({ status }) => status === "ISSUED"))
        }
        assert.isTrue(yield* failedNotQueued(coupon.couponId, 5))
        assert.deepStrictEqual(yield* gate(coupon.couponId), {
          counter: "3",
          members: ["1", "2", "3"],
          pending: {},
          since: []
        })
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
        assert.deepStrictEqual(report.body["db"], { issuedQuantity: 3, userCoupons: 3, failures: 2 })
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(env().provider)),
    { timeout: 90_000 }
  )

  it.live(
    "a lost retry of a user whose earlier request was issued after all is settled as that coupon, not NOT_QUEUED: the user counted once",
    () =>
      Effect.gen(function*() {
        const reservations = yield* StockReservations
        const coupon = yield* createCoupon(3)
        const userId = Ids.UserId.make(1)
        // A publish whose outcome was unknown: rolled back in Redis, though the broker had stored it.
        const first = yield* reserveOnly(coupon.couponId, 1)
        assert.isTrue(yield* reservations.rollback(coupon.couponId, userId, first))
        // The user asks again; that request's process dies before its publish.
        yield* reserveOnly(coupon.couponId, 1)
        yield* publishLate(coupon.couponId, 1, first)
        yield* eventually(Effect.map(issuedUsers(coupon.couponId), (users) => users.has(1)), "30 seconds", "issued")
        yield* eventually(
          Effect.map(gate(coupon.couponId), ({ pending }) => Object.keys(pending).length === 0),
          "30 seconds",
          "the retry's reservation settled"
        )
        assert.deepStrictEqual(yield* failures(coupon.couponId), [])
        assert.deepStrictEqual(yield* gate(coupon.couponId), { counter: "1", members: ["1"], pending: {}, since: [] })
        assert.strictEqual((yield* statusOf(coupon.couponId, 1)).status, "ISSUED")
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(env().provider)),
    { timeout: 90_000 }
  )

  it.live(
    "a record that arrives after its reservation was reclaimed issues nothing: the user stays FAILED and the unit stays on sale",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const coupon = yield* createCoupon(5)
        const lost = yield* reserveOnly(coupon.couponId, 1)
        yield* eventually(failedNotQueued(coupon.couponId, 1), "30 seconds", "user 1 FAILED as NOT_QUEUED")
        const before = yield* committed(config.topics.issueGroup, config.topics.requests.name)

        yield* publishLate(coupon.couponId, 1, lost)
        yield* eventually(
          Effect.map(committed(config.topics.issueGroup, config.topics.requests.name), (n) => n === before + 1),
          "30 seconds",
          "the late record consumed"
        )
        assert.strictEqual(yield* issuedUsers(coupon.couponId).pipe(Effect.map((users) => users.size)), 0)
        assert.isTrue(yield* failedNotQueued(coupon.couponId, 1))
        assert.deepStrictEqual(yield* gate(coupon.couponId), { counter: "0", members: [], pending: {}, since: [] })
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
        assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
        yield* eventually(Effect.map(statusOf(coupon.couponId, 1), ({ status }) => status === "ISSUED"))
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(env().provider)),
    { timeout: 90_000 }
  )

  it.live(
    "a request whose record is in Kafka is not released while the consumer is stopped; once it runs, the request is ISSUED and the lost one released",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        yield* Layer.build(Topics.layer)
        const coupon = yield* createCoupon(5)
        assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
        const lost = yield* reserveOnly(coupon.couponId, 2)

        // Fresh, both count as in flight.
        const young = yield* reconciliation(coupon.couponId)
        assert.strictEqual(young.body["consistent"], true, JSON.stringify(young.body))
        assert.strictEqual(young.body["inFlight"], 2)

        // The reclaimer runs, the consumer group does not: nothing below the topic's end is known, nothing is released.
        yield* Layer.build(ReservationReclaimer.layer)
        yield* Effect.sleep("5 seconds")
        assert.strictEqual(yield* committed(config.topics.issueGroup, config.topics.requests.name), 0)
        assert.strictEqual((yield* statusOf(coupon.couponId, 1)).status, "PENDING")
        assert.strictEqual((yield* statusOf(coupon.couponId, 2)).status, "PENDING")
        assert.deepStrictEqual(yield* failures(coupon.couponId), [])
        const held = yield* gate(coupon.couponId)
        assert.deepStrictEqual([held.counter, held.members, Object.keys(held.pending).sort()], [
          "2",
          ["1", "2"],
          ["1", "2"]
        ])
        // The report calls them stale rather than in flight.
        const stale = yield* reconciliation(coupon.couponId)
        assert.strictEqual(stale.body["consistent"], false)
        assert.strictEqual(stale.body["inFlight"], 0)
        assert.deepStrictEqual(stale.body["drift"], [{
          kind: "STALE_RESERVATION",
          detail: "2 requests pending for over 3s with no outcome in the database: probably never queued",
          userIds: ["1", "2"]
        }])

        // The consumers (with a reclaimer of their own) start: the queued request is issued, the lost one released.
        yield* Layer.build(App.consumer)
        yield* eventually(
          Effect.map(statusOf(coupon.couponId, 1), ({ status }) => status === "ISSUED"),
          "30 seconds",
          "user 1 ISSUED"
        )
        yield* eventually(failedNotQueued(coupon.couponId, 2), "30 seconds", "user 2 FAILED as NOT_QUEUED")
        assert.deepStrictEqual(yield* failures(coupon.couponId), [{ eventId: lost, userId: "2", reason: "NOT_QUEUED" }])
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))], [1])
        assert.deepStrictEqual(yield* gate(coupon.couponId), { counter: "1", members: ["1"], pending: {}, since: [] })
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
      }).pipe(Effect.scoped, Effect.provide(RequestPathLive), Effect.withConfigProvider(env().provider)),
    { timeout: 90_000 }
  )

  it.live(
    "reclaiming an older request of a user never undoes the user's newer one",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const reservations = yield* StockReservations
        yield* Layer.build(Topics.layer)
        const coupon = yield* createCoupon(5)
        // The lost request was rolled back meanwhile, and the user asked again.
        const older = yield* reserveOnly(coupon.couponId, 1)
        assert.isTrue(yield* reservations.rollback(coupon.couponId, Ids.UserId.make(1), older))
        const newer = yield* issue(coupon.couponId, 1)
        assert.strictEqual(newer.tag, "Accepted")
        const newerId = newer.body["eventId"]

        // A reclaimer that had read the older request as stale releases it now.
        const reclaimer = yield* ReservationReclaimer.ReservationReclaimer
        assert.strictEqual(yield* reclaimer.release(coupon.couponId, [{ userId: "1", eventId: older }]), 1)
        assert.deepStrictEqual(yield* gate(coupon.couponId), {
          counter: "1",
          members: ["1"],
          pending: { "1": String(newerId) },
          since: ["1"]
        })
        assert.strictEqual((yield* statusOf(coupon.couponId, 1)).status, "PENDING")

        // The newer request is issued; the older one's record, arriving late, changes nothing.
        yield* Layer.build(App.consumer)
        yield* eventually(Effect.map(statusOf(coupon.couponId, 1), ({ status }) => status === "ISSUED"), "30 seconds")
        yield* publishLate(coupon.couponId, 1, older)
        yield* eventually(
          Effect.map(committed(config.topics.issueGroup, config.topics.requests.name), (n) => n === 2),
          "30 seconds",
          "the late record consumed"
        )
        const sql = yield* SqlClient
        const rows = yield* sql<{ eventId: string }>`
          SELECT event_id::text AS event_id FROM user_coupons WHERE coupon_id = ${coupon.couponId}`
        assert.deepStrictEqual(rows, [{ eventId: String(newerId) }])
        assert.strictEqual((yield* statusOf(coupon.couponId, 1)).status, "ISSUED")
        assert.deepStrictEqual(yield* gate(coupon.couponId), { counter: "1", members: ["1"], pending: {}, since: [] })
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
      }).pipe(
        Effect.scoped,
        Effect.provide(ReservationReclaimer.ReservationReclaimer.Default),
        Effect.provide(RequestPathLive),
        Effect.withConfigProvider(env().provider)
      ),
    { timeout: 90_000 }
  )

  it.live(
    "an api process killed mid-sale (publishes queued and in flight): nobody stays PENDING, every lost reservation goes back on sale",
    () =>
      Effect.gen(function*() {
        yield* Layer.build(Topics.layer)
        const quantity = 100_000
        const coupon = yield* createCoupon(quantity)
        const doomed = yield* startProcess(shared.env, { REPLICA: "1", COUPON_ROLES: "api", PUBLISH_MAX_BATCH: "1" })
        // This process runs the consumers and a reclaimer.
        yield* Layer.build(App.consumer)

        // One event per producer request: while one is in flight, the requests behind it wait reserved in its queue.
        let accepted = 0
        const users = Array.from({ length: 3_000 }, (_, i) => i + 1)
        const answers = new Map<number, number>()
        const sent = new Set<number>()
        const sale = yield* Effect.forEach(users, (userId) =>
          Effect.tryPromise(() => {
            sent.add(userId)
            return fetch(`${doomed.baseUrl}/api/coupons/${coupon.couponId}/issue`, {
              method: "POST",
              headers: { "x-user-id": String(userId) }
            }).then(async (response) => {
              await response.arrayBuffer()
              if (response.status === 202) accepted++
              answers.set(userId, response.status)
            })
          }).pipe(Effect.ignore), { concurrency: 100, discard: true }).pipe(Effect.fork)

        // Frozen mid-sale, then killed: whatever it reserved and had not published is lost with it.
        yield* eventually(Effect.sync(() => accepted >= 300), "60 seconds", "300 requests accepted")
        yield* doomed.signal("SIGSTOP")
        yield* doomed.kill
        yield* Fiber.interrupt(sale)
        const acceptedUsers = users.filter((userId) => answers.get(userId) === 202)
        // Sent but unanswered: killed somewhere between the request and its answer.
        const unanswered = [...sent].filter((userId) => !answers.has(userId))
        assert.isAbove(unanswered.length, 0)

        const redis = yield* Redis.Redis
        const keys = yield* keysOf(coupon.couponId)
        yield* eventually(
          Effect.map(redis.use((c) => c.hlen(keys.pending)), (n) => n === 0),
          "60 seconds",
          "no reservation pending"
        )
        const lost = yield* failures(coupon.couponId)
        assert.isAbove(lost.length, 0, "the process was killed with no reservation between the gate and Kafka")
        assert.isTrue(lost.every(({ reason }) => reason === "NOT_QUEUED"))

        // Accepted means in Kafka: issued. Every other user who reached the gate is ISSUED or FAILED (NOT_QUEUED).
        const issued = yield* issuedUsers(coupon.couponId)
        assert.isTrue(acceptedUsers.every((userId) => issued.has(userId)))
        const lostUsers = new Set(lost.map(({ userId }) => Number(userId)))
        const states = yield* Effect.forEach(unanswered, (userId) => statusOf(coupon.couponId, userId), {
          concurrency: 50
        })
        unanswered.forEach((userId, i) => {
          const { reason, status } = states[i]!
          if (issued.has(userId)) assert.strictEqual(status, "ISSUED")
          else if (lostUsers.has(userId)) assert.deepStrictEqual([status, reason], ["FAILED", "NOT_QUEUED"])
          else assert.strictEqual(status, "NOT_REQUESTED")
        })
        const view = yield* gate(coupon.couponId)
        assert.strictEqual(Number(view.counter), issued.size)
        assert.deepStrictEqual(view.members, [...issued].map(String).sort())
        const report = yield* reconciliation(coupon.couponId)
        assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
        // A lost user may ask again.
        const [again] = [...lostUsers]
        assert.strictEqual((yield* issue(coupon.couponId, again!)).tag, "Accepted")
      }).pipe(Effect.scoped, Effect.provide(RequestPathLive), Effect.withConfigProvider(shared.provider)),
    { timeout: 240_000 }
  )
})
