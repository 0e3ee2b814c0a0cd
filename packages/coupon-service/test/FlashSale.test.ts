import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import {
  type Answer,
  createCoupon,
  eventually,
  issue,
  issuedCount,
  issuedUsers,
  issueStatus,
  reconciliation,
  tally,
  testEnv,
  TestLive
} from "./utils.ts"

const inFlight = 200
// A correctness test, not a speed one (that is `pnpm bench:coupons`): some 20,000 HTTP requests, each
// on a new connection, with the consumers in the same process: on the 2 cores at load 8-19 (CI beside
// other test runs) it took 170-185 s.
const saleTimeout = 420_000

/**
 * Fires `requests` (user ids, repeats allowed) at one coupon of `quantity`, 200 in flight, through
 * the HTTP layer; then checks every answer, every user's status, the database and the reconciliation.
 */
const flashSale = (quantity: number, requests: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const coupon = yield* createCoupon(quantity)
    const answers = yield* Effect.forEach(
      requests,
      (userId) => Effect.map(issue(coupon.couponId, userId), (answer) => ({ userId, answer })),
      { concurrency: inFlight }
    )
    const counts = tally(answers.map(({ answer }) => answer))
    const expected = new Set(["Accepted", "CouponSoldOut", "AlreadyRequested"])
    assert.isTrue(
      Object.keys(counts).every((tag) => expected.has(tag)),
      `unexpected answers: ${JSON.stringify(counts)}`
    )
    assert.strictEqual(counts["Accepted"], quantity)

    const byUser = new Map<number, Array<Answer>>()
    for (const { answer, userId } of answers) byUser.set(userId, [...(byUser.get(userId) ?? []), answer])
    const accepted = new Set<number>()
    for (const [userId, userAnswers] of byUser) {
      const tags = userAnswers.map((answer) => answer.tag)
      assert.isAtMost(tags.filter((tag) => tag === "Accepted").length, 1, `user ${userId} accepted twice`)
      if (tags.includes("Accepted")) accepted.add(userId)
      else assert.notInclude(tags, "AlreadyRequested", `user ${userId} was told "already requested" without a request`)
    }

    yield* eventually(Effect.map(issuedCount(coupon.couponId), (n) => n >= quantity), "60 seconds")
    assert.strictEqual(yield* issuedCount(coupon.couponId), quantity)
    assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))].sort(), [...accepted].sort())

    const statuses = yield* Effect.forEach(
      [...byUser.keys()],
      (userId) =>
        Effect.map(issueStatus(coupon.couponId, userId), (answer) => [userId, answer.body["status"]] as const),
      { concurrency: inFlight }
    )
    const issuedByStatus = statuses.filter(([, status]) => status === "ISSUED").map(([userId]) => userId)
    assert.deepStrictEqual(issuedByStatus.sort(), [...accepted].sort())
    assert.isTrue(statuses.every(([, status]) => status === "ISSUED" || status === "NOT_REQUESTED"))

    const report = yield* reconciliation(coupon.couponId)
    assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
    assert.deepStrictEqual(report.body["redis"], { state: "ready", counter: quantity, members: quantity, pending: 0 })
    return counts
  })

describe("flash sale through the HTTP API", () => {
  it.live(
    "10,000 concurrent requests from distinct users for 100 coupons: exactly 100 issued, one each, all others sold out",
    () =>
      Effect.gen(function*() {
        const users = Array.from({ length: 10_000 }, (_, i) => i + 1)
        const counts = yield* flashSale(100, users)
        assert.deepStrictEqual(counts, { Accepted: 100, CouponSoldOut: 9_900 })
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: saleTimeout }
  )

  it.live(
    "the same with 1,000 duplicate requests mixed in: still 100, at most one per user",
    () =>
      Effect.gen(function*() {
        const distinct = Array.from({ length: 9_000 }, (_, i) => i + 1)
        // Duplicates of the earliest users, most of whom win, so "already requested" really happens.
        const duplicates = Array.from({ length: 1_000 }, (_, i) => (i % 300) + 1)
        const requests = yield* Random.shuffle([...distinct.slice(0, 600), ...duplicates])
        const counts = yield* flashSale(100, [...requests, ...distinct.slice(600)])
        assert.strictEqual(Object.values(counts).reduce((a, b) => a + b, 0), 10_000)
        assert.isAbove(counts["AlreadyRequested"] ?? 0, 0)
      }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: saleTimeout }
  )
})
