import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import {
  AdminAuth,
  CouponApi,
  CurrentUser,
  IssueEndpoint,
  UserIdentity,
  userIdHeader
} from "@kpipe/contracts/CouponApi"
import { InvalidUserId, MissingUserId, Unauthorized } from "@kpipe/contracts/CouponErrors"
import { Ids } from "@kpipe/events"
import { FastRoute, JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import { Config } from "./Config.ts"
import { CouponIssuer } from "./CouponIssuer.ts"
import { Reconciliation } from "./Reconciliation.ts"

const digest = (text: string) => createHash("sha256").update(text).digest()

const adminAuth = Layer.effect(
  AdminAuth,
  Effect.map(Config, (config) => {
    const expected = digest(Redacted.value(config.adminToken))
    return AdminAuth.of({
      adminToken: (token) => {
        const given = Redacted.value(token)
        return given !== "" && timingSafeEqual(digest(given), expected)
          ? Effect.void
          : Effect.fail(
            new Unauthorized({
              message: given === "" ? "Missing admin token (Authorization: Bearer …)." : "Wrong admin token."
            })
          )
      }
    })
  })
)

const decimal = /^[1-9][0-9]{0,15}$/

/** A positive integer id, or `undefined`. */
const positiveIdOf = (text: string) => {
  const value = decimal.test(text) ? Number(text) : NaN
  return Number.isSafeInteger(value) ? value : undefined
}

/** Parses the gateway's `X-User-Id`: absent → 401, anything but a positive integer → 400. */
const parseUserId = (raw: string) => {
  const text = raw.trim()
  if (text === "") return Effect.fail(new MissingUserId({ message: `Missing ${userIdHeader} header.` }))
  const value = positiveIdOf(text)
  return value === undefined
    ? Effect.fail(new InvalidUserId({ message: `${userIdHeader} must be a positive integer.` }))
    : Effect.succeed(Ids.UserId.make(value))
}

const userIdentity = Layer.succeed(
  UserIdentity,
  UserIdentity.of({ gateway: (header) => parseUserId(Redacted.value(header)) })
)

/** The issue endpoint, the same through the HttpApi and the fast route. */
const issue = (issuer: CouponIssuer, couponId: Ids.CouponId, userId: Ids.UserId) =>
  issuer.issue(couponId, userId).pipe(Unavailable.orServiceUnavailable("Issuing"))

const adminGroup = HttpApiBuilder.group(CouponApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const issuer = yield* CouponIssuer
    const reconciliation = yield* Reconciliation
    return handlers
      .handle("createCoupon", ({ payload }) => issuer.create(payload).pipe(Unavailable.orServiceUnavailable("Coupons")))
      .handle("reconciliation", ({ path }) =>
        reconciliation.check(path.couponId).pipe(Unavailable.orServiceUnavailable("Reconciliation")))
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
          (userId) => issuer.myCoupons(userId).pipe(Unavailable.orServiceUnavailable("Coupons"))
        ))
  }))

/** The API's handlers and middleware (`HttpApi.Api`); needs `CouponIssuer`, `Reconciliation` and `Config`. */
export const layer = HttpApiBuilder.api(CouponApi).pipe(
  Layer.provide(Layer.mergeAll(adminGroup, couponsGroup)),
  Layer.provide(Layer.mergeAll(adminAuth, userIdentity, JsonBody.layer))
)

const issuePath = /^\/api\/coupons\/([^/?#]+)\/issue$/
const userIdHeaderKey = userIdHeader.toLowerCase()

/**
 * `POST /api/coupons/{couponId}/issue`, the request every user of a sale sends, answered ahead of
 * the HttpApi router (`FastRoute`). It takes well-formed requests only; a malformed coupon id or user
 * header is left to the HttpApi, whose typed 400/401 answers stay the single source of truth.
 */
export const fastRoute = Effect.map(CouponIssuer, (issuer) =>
  FastRoute.make(IssueEndpoint, {
    match: (request) => {
      const path = issuePath.exec(request.url ?? "")
      const header = request.headers[userIdHeaderKey]
      if (path === null || typeof header !== "string") return undefined
      const couponId = positiveIdOf(path[1]!)
      const userId = positiveIdOf(header.trim())
      return couponId === undefined || userId === undefined
        ? undefined
        : { couponId: Ids.CouponId.make(couponId), userId: Ids.UserId.make(userId) }
    },
    handle: ({ couponId, userId }) => issue(issuer, couponId, userId)
  }))
