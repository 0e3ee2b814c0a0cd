import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { CouponApi, IssueEndpoint } from "@kpipe/contracts/CouponApi"
import { CouponNotFound } from "@kpipe/contracts/CouponErrors"
import { Coupon, Drift, ReconciliationReport, UserCoupon, UserCoupons } from "@kpipe/contracts/CouponModels"
import { CurrentUser } from "@kpipe/contracts/Users"
import { Ids } from "@kpipe/events"
import { AdminToken, FastRoute, GatewayUser, JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Config } from "./Config.ts"
import { CouponIssuer } from "./CouponIssuer.ts"
import { Reconciliation } from "./Reconciliation.ts"

const adminAuth = Layer.unwrapEffect(Effect.map(Config, (config) => AdminToken.layer(config.adminToken)))

/** The issue endpoint, the same through the HttpApi and the fast route. */
const issue = (issuer: CouponIssuer, couponId: Ids.CouponId, userId: Ids.UserId) =>
  issuer.issue(couponId, userId).pipe(Unavailable.orServiceUnavailable("Issuing"))

const adminGroup = HttpApiBuilder.group(CouponApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const issuer = yield* CouponIssuer
    const reconciliation = yield* Reconciliation
    return handlers
      .handle("createCoupon", ({ payload }) =>
        issuer.create(payload).pipe(
          Effect.map((created) => new Coupon(created)),
          Unavailable.orServiceUnavailable("Coupons")
        ))
      .handle("reconciliation", ({ path }) =>
        reconciliation.check(path.couponId).pipe(
          Effect.flatMap(Option.match({
            onNone: () =>
              Effect.fail(
                new CouponNotFound({ couponId: path.couponId, message: `Coupon ${path.couponId} does not exist.` })
              ),
            onSome: (report) =>
              Effect.succeed(
                new ReconciliationReport({ ...report, drift: report.drift.map((drift) => new Drift(drift)) })
              )
          })),
          Unavailable.orServiceUnavailable("Reconciliation")
        ))
  }))

const couponsGroup = HttpApiBuilder.group(CouponApi, "coupons", (handlers) =>
  Effect.gen(function*() {
    const issuer = yield* CouponIssuer
    return handlers
      .handle("issue", ({ path }) => Effect.flatMap(CurrentUser, (userId) => issue(issuer, path.couponId, userId)))
      .handle("issueStatus", ({ path }) =>
        Effect.flatMap(
          CurrentUser,
          (userId) => issuer.status(path.couponId, userId).pipe(Unavailable.orServiceUnavailable("Issue status"))
        ))
      .handle("myCoupons", () =>
        Effect.flatMap(
          CurrentUser,
          (userId) =>
            issuer.myCoupons(userId).pipe(
              Effect.map((coupons) => new UserCoupons({ userId, coupons: coupons.map((c) => new UserCoupon(c)) })),
              Unavailable.orServiceUnavailable("Coupons")
            )
        ))
  }))

/** The API's handlers and middleware (`HttpApi.Api`); needs `CouponIssuer`, `Reconciliation` and `Config`. */
export const layer = HttpApiBuilder.api(CouponApi).pipe(
  Layer.provide(Layer.mergeAll(adminGroup, couponsGroup)),
  Layer.provide(Layer.mergeAll(adminAuth, GatewayUser.layer, JsonBody.layer))
)

const issuePath = /^\/api\/coupons\/([^/?#]+)\/issue$/

/**
 * `POST /api/coupons/{couponId}/issue`, the request every user of a sale sends, answered ahead of
 * the HttpApi router (`FastRoute`). It takes well-formed requests only; a malformed coupon id or user
 * header is left to the HttpApi, whose typed 400/401 answers stay the single source of truth.
 */
export const fastRoute = Effect.map(CouponIssuer, (issuer) =>
  FastRoute.make(IssueEndpoint, {
    match: (request) => {
      const path = issuePath.exec(request.url ?? "")
      const couponId = path === null ? undefined : GatewayUser.positiveId(path[1]!)
      const userId = GatewayUser.fromHeaders(request.headers)
      return couponId === undefined || userId === undefined
        ? undefined
        : { couponId: Ids.CouponId.make(couponId), userId }
    },
    handle: ({ couponId, userId }) => issue(issuer, couponId, userId)
  }))
