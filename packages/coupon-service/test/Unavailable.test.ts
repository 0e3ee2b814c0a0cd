import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Redis } from "@kpipe/redis"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, FaultProxy } from "@kpipe/testing"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type { CouponKeys } from "../src/internal/reservationScripts.ts"
import * as Topics from "../src/Topics.ts"
import {
  type Answer,
  behindRedisProxy,
  createCoupon,
  eventually,
  issue,
  issuedUsers,
  issueStatus,
  keysOf,
  reconciliation,
  RequestPathLive,
  send,
  testEnv,
  TestLive
} from "./utils.ts"

const viaHttpApi = (couponId: number, userId: number) =>
  send(
    HttpClientRequest.post(`/api/coupons/${couponId}/issue?via=httpapi`).pipe(
      HttpClientRequest.setHeader("x-user-id", String(userId))
    )
  )

/** What Redis holds for the user, read past the proxy. */
const held = (redis: Context.Tag.Service<typeof Redis.Redis>, keys: CouponKeys, userId: number) =>
  redis.use(async (client) => ({
    member: await client.sismember(keys.users, String(userId)),
    pending: await client.hget(keys.pending, String(userId)),
    status: await client.get(keys.status(userId))
  }))

const nothingHeld = { member: 0, pending: null, status: null }

const shown = (answer: Answer) => `${answer.status} ${answer.body["status"] ?? answer.tag}`

const within5s = <E, R>(request: Effect.Effect<Answer, E, R>) =>
  Effect.timeoutTo(Effect.map(request, shown), {
    duration: "5 seconds",
    onSuccess: (answer) => answer,
    onTimeout: () => "no answer within 5 s"
  })

const asked = (userId: number) => (request: HttpClientRequest.HttpClientRequest) =>
  send(HttpClientRequest.setHeader(request, "x-user-id", String(userId)))

describe("infrastructure that does not answer", () => {
  it.live(
    "Redis cut: the issue endpoint answers a typed 503 through the fast route and the HttpApi alike",
    () =>
      behindRedisProxy(RequestPathLive, (proxy) =>
        Effect.gen(function*() {
          yield* Layer.build(Topics.layer)
          const coupon = yield* createCoupon(5)
          const answers = yield* proxy.during(
            FaultProxy.cut,
            Effect.all([issue(coupon.couponId, 1), viaHttpApi(coupon.couponId, 2)])
          )
          assert.deepStrictEqual(answers.map((answer) => `${answer.status} ${answer.tag}`), [
            "503 ServiceUnavailable",
            "503 ServiceUnavailable"
          ])
          yield* eventually(Effect.map(issue(coupon.couponId, 1), (answer) => answer.status === 202))
        })),
    { timeout: 60_000 }
  )

  it.live(
    "Redis unreachable before the request: the reserve was never sent, so nothing is cancelled afterwards",
    () =>
      behindRedisProxy(RequestPathLive, (proxy) =>
        Effect.gen(function*() {
          const direct = yield* Redis.make({ url: Redacted.make("redis://127.0.0.1:6379") })
          yield* Layer.build(Topics.layer)
          const coupon = yield* createCoupon(5)
          const keys = yield* keysOf(coupon.couponId)
          yield* proxy.set(FaultProxy.cut)
          // The client has seen its connection go and queues commands offline, failing them unsent.
          yield* Effect.sleep("500 millis")
          assert.strictEqual(shown(yield* issue(coupon.couponId, 1)), "503 ServiceUnavailable")
          yield* proxy.set(FaultProxy.pass)
          yield* eventually(Effect.map(issue(coupon.couponId, 2), (answer) => answer.status === 202))
          // A cancel retried in the background would have left its marker once Redis was back.
          yield* Effect.sleep("1 second")
          assert.deepStrictEqual(yield* direct.use((client) => client.keys(keys.cancelled("*"))), [])
          assert.strictEqual(shown(yield* issue(coupon.couponId, 1)), "202 PENDING")
        })),
    { timeout: 60_000 }
  )

  it.live("the database refusing connections: the user endpoints answer a typed 503", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const coupon = yield* createCoupon(5)
      const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
      const url = yield* Database.url
      const answers = yield* Effect.gen(function*() {
        yield* DatabaseFaults.refuseConnections(url, current!.database)
        return yield* Effect.all([
          asked(1)(HttpClientRequest.get("/api/users/me/coupons")),
          asked(1)(HttpClientRequest.get(`/api/coupons/${coupon.couponId + 1}/issue-status`))
        ])
      }).pipe(Effect.scoped)
      assert.deepStrictEqual(answers.map((answer) => `${answer.status} ${answer.tag}`), [
        "503 ServiceUnavailable",
        "503 ServiceUnavailable"
      ])
      yield* eventually(
        Effect.map(asked(1)(HttpClientRequest.get("/api/users/me/coupons")), (answer) => answer.status === 200)
      )
    }).pipe(Effect.provide(RequestPathLive), Effect.withConfigProvider(testEnv().provider)), { timeout: 60_000 })

  it.live(
    "a reservation whose reply a connection reset lost: a 202 that ends ISSUED, or a 503 that leaves nothing held",
    () =>
      behindRedisProxy(TestLive, (proxy) =>
        Effect.gen(function*() {
          const direct = yield* Redis.make({ url: Redacted.make("redis://127.0.0.1:6379") })
          const coupon = yield* createCoupon(5)
          const keys = yield* keysOf(coupon.couponId)
          yield* proxy.set(FaultProxy.dropResponses)
          const request = yield* Effect.fork(issue(coupon.couponId, 1))
          // The reserve script ran, and its reply is lost with the connection (unless the request
          // gave up on Redis first, when a heartbeat's lost reply held the reserve back).
          yield* eventually(
            Effect.zipWith(
              held(direct, keys, 1),
              Fiber.poll(request),
              (state, answered) => state.pending !== null || Option.isSome(answered)
            )
          )
          yield* proxy.set(FaultProxy.cut)
          yield* Effect.sleep("100 millis")
          yield* proxy.set(FaultProxy.pass)
          const answer = yield* Fiber.join(request)
          if (answer.status === 202) {
            yield* eventually(
              Effect.map(issueStatus(coupon.couponId, 1), (status) => status.body["status"] === "ISSUED")
            )
          } else {
            assert.strictEqual(shown(answer), "503 ServiceUnavailable")
            // The cancel may still be on its way when a loaded machine answered the 503 first.
            yield* eventually(
              Effect.map(held(direct, keys, 1), (state) => JSON.stringify(state) === JSON.stringify(nothingHeld))
            )
            assert.strictEqual(shown(yield* issue(coupon.couponId, 1)), "202 PENDING")
          }
        })),
    { timeout: 60_000 }
  )

  it.live(
    "Redis frozen or its route dead: issuing answers 503 and the status comes from the database, each within 5 s; then nothing is left held",
    () =>
      behindRedisProxy(TestLive, (proxy) =>
        Effect.gen(function*() {
          const coupon = yield* createCoupon(5)
          assert.strictEqual((yield* issue(coupon.couponId, 1)).tag, "Accepted")
          yield* eventually(
            Effect.map(issueStatus(coupon.couponId, 1), (answer) => answer.body["status"] === "ISSUED")
          )
          for (const [fault, userId] of [[FaultProxy.freeze, 2], [FaultProxy.blackhole, 3]] as const) {
            const answers = yield* proxy.during(
              fault,
              Effect.all([
                within5s(issue(coupon.couponId, userId)),
                within5s(issueStatus(coupon.couponId, 1)),
                within5s(issueStatus(coupon.couponId, userId))
              ], { concurrency: "unbounded" })
            )
            assert.deepStrictEqual(answers, ["503 ServiceUnavailable", "200 ISSUED", "200 NOT_REQUESTED"], fault._tag)
            // Whatever of the refused request reaches Redis afterwards is undone: the user may ask again.
            const retried = yield* issue(coupon.couponId, userId).pipe(
              Effect.filterOrFail((answer) => answer.status !== 503, () => new Error("still 503")),
              Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300 })
            )
            assert.strictEqual(shown(retried), "202 PENDING", fault._tag)
          }
          yield* eventually(Effect.map(issuedUsers(coupon.couponId), (users) => users.size === 3))
          const report = yield* reconciliation(coupon.couponId)
          assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
          assert.deepStrictEqual(report.body["redis"], { state: "ready", counter: 3, members: 3, pending: 0 })
        })),
    { timeout: 90_000 }
  )
})
