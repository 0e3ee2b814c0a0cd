import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, FaultProxy } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Topics from "../src/Topics.ts"
import { createCoupon, eventually, issue, RequestPathLive, send, testEnv } from "./utils.ts"

const viaHttpApi = (couponId: number, userId: number) =>
  send(
    HttpClientRequest.post(`/api/coupons/${couponId}/issue?via=httpapi`).pipe(
      HttpClientRequest.setHeader("x-user-id", String(userId))
    )
  )

const asked = (userId: number) => (request: HttpClientRequest.HttpClientRequest) =>
  send(HttpClientRequest.setHeader(request, "x-user-id", String(userId)))

describe("infrastructure that does not answer", () => {
  it.live(
    "Redis cut: the issue endpoint answers a typed 503 through the fast route and the HttpApi alike",
    () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy.make({ host: "127.0.0.1", port: 6379 })
        yield* Effect.gen(function*() {
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
        }).pipe(
          Effect.scoped,
          Effect.provide(RequestPathLive),
          Effect.withConfigProvider(testEnv({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` }).provider)
        )
      }).pipe(Effect.scoped),
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
})
