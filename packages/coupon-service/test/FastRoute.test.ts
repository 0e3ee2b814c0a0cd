import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, it } from "@effect/vitest"
import { IssueEndpoint } from "@kpipe/contracts/CouponApi"
import { FastRoute } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { type Answer, createClosedCoupons, createCoupon, send, testEnv, TestLive } from "./utils.ts"

const served = FastRoute.served(IssueEndpoint.method, IssueEndpoint.path)

// The fast route takes `/api/coupons/{id}/issue` exactly; with a query string the same request
// goes through the HttpApi router (the endpoint ignores query parameters).
const issueVia = (via: "fast" | "httpapi", couponId: number, userId: number) =>
  send(
    HttpClientRequest.post(`/api/coupons/${couponId}/issue${via === "fast" ? "" : "?via=httpapi"}`).pipe(
      HttpClientRequest.setHeader("x-user-id", String(userId))
    )
  )

/** An answer without what differs between two requests by design: the event id and the user. */
const comparable = ({ body, status }: Answer) => {
  const { eventId, userId, ...rest } = body
  return { status, rest, eventId: typeof eventId, userId: typeof userId }
}

// `served` is a process-wide counter that both tests read as a difference: they must not overlap.
describe.sequential("the issue endpoint's fast route", () => {
  it.live("answers every outcome exactly as the HttpApi does, and is the one answering", () =>
    Effect.gen(function*() {
      const open = yield* createCoupon(2)
      const { expired, future } = yield* createClosedCoupons
      const before = (yield* Metric.value(served)).count

      // name, coupon, the user asking through the fast route, the user asking through the HttpApi
      const cases = [
        ["accepted", open.couponId, 1, 2],
        ["duplicate", open.couponId, 1, 1],
        ["soldOut", open.couponId, 3, 4],
        ["unknown", 999_999_999, 1, 1],
        ["expired", expired.couponId, 1, 1],
        ["notYetOpen", future.couponId, 1, 1]
      ] as const
      const pairs: Record<string, { readonly fast: Answer; readonly httpapi: Answer }> = {}
      for (const [name, couponId, fastUser, apiUser] of cases) {
        pairs[name] = {
          fast: yield* issueVia("fast", couponId, fastUser),
          httpapi: yield* issueVia("httpapi", couponId, apiUser)
        }
      }

      const statuses = Object.fromEntries(Object.entries(pairs).map(([name, { fast }]) => [name, fast.status]))
      assert.deepStrictEqual(statuses, {
        accepted: 202,
        duplicate: 409,
        soldOut: 410,
        unknown: 404,
        expired: 403,
        notYetOpen: 425
      })
      for (const [name, { fast, httpapi }] of Object.entries(pairs)) {
        assert.deepStrictEqual(comparable(fast), comparable(httpapi), name)
      }
      assert.strictEqual(pairs.accepted!.fast.body["userId"], 1)
      assert.strictEqual(pairs.accepted!.fast.body["status"], "PENDING")
      // Six answered by the fast route, none of the other six.
      assert.strictEqual((yield* Metric.value(served)).count - before, 6)
    }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)), { timeout: 60_000 })

  it.live("leaves malformed requests to the HttpApi's typed answers", () =>
    Effect.gen(function*() {
      const open = yield* createCoupon(5)
      const before = (yield* Metric.value(served)).count
      const answers = {
        malformedCoupon: yield* send(
          HttpClientRequest.post("/api/coupons/abc/issue").pipe(HttpClientRequest.setHeader("x-user-id", "1"))
        ),
        zeroCoupon: yield* send(
          HttpClientRequest.post("/api/coupons/0/issue").pipe(HttpClientRequest.setHeader("x-user-id", "1"))
        ),
        missingUser: yield* send(HttpClientRequest.post(`/api/coupons/${open.couponId}/issue`)),
        textUser: yield* send(
          HttpClientRequest.post(`/api/coupons/${open.couponId}/issue`).pipe(
            HttpClientRequest.setHeader("x-user-id", "bob")
          )
        )
      }
      assert.deepStrictEqual(
        Object.fromEntries(Object.entries(answers).map(([name, answer]) => [name, `${answer.status} ${answer.tag}`])),
        {
          malformedCoupon: "400 HttpApiDecodeError",
          zeroCoupon: "400 HttpApiDecodeError",
          missingUser: "401 MissingUserId",
          textUser: "400 InvalidUserId"
        }
      )
      assert.strictEqual((yield* Metric.value(served)).count - before, 0)
    }).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)), { timeout: 60_000 })
})
