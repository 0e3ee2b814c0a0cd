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
import { ServiceUnavailable } from "@kpipe/contracts/ServiceUnavailable"
import { Ids } from "@kpipe/events"
import { FastRoute, JsonBody } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import { CouponConfig } from "./CouponConfig.ts"
import { CouponIssuer } from "./CouponIssuer.ts"
import { Reconciliation } from "./Reconciliation.ts"

const digest = (text: string) => createHash("sha256").update(text).digest()

export const AdminAuthLive = Layer.effect(
  AdminAuth,
  Effect.map(CouponConfig, (config) => {
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
export const parseUserId = (raw: string) => {
  const text = raw.trim()
  if (text === "") return Effect.fail(new MissingUserId({ message: `Missing ${userIdHeader} header.` }))
  const value = positiveIdOf(text)
  return value === undefined
    ? Effect.fail(new InvalidUserId({ message: `${userIdHeader} must be a positive integer.` }))
    : Effect.succeed(Ids.UserId.make(value))
}

export const UserIdentityLive = Layer.succeed(
  UserIdentity,
  UserIdentity.of({ gateway: (header) => parseUserId(Redacted.value(header)) })
)

const AdminGroupLive = HttpApiBuilder.group(CouponApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const issuer = yield* CouponIssuer
    const reconciliation = yield* Reconciliation
    return handlers
      .handle("createCoupon", ({ payload }) => issuer.create(payload))
      .handle("reconciliation", ({ path }) =>
        reconciliation.check(path.couponId).pipe(
          Effect.catchTags({
            SqlError: () => Effect.fail(new ServiceUnavailable({ message: "The database did not answer." })),
            RedisError: () => Effect.fail(new ServiceUnavailable({ message: "Redis did not answer." }))
          })
        ))
  }))

const CouponsGroupLive = HttpApiBuilder.group(CouponApi, "coupons", (handlers) =>
  Effect.gen(function*() {
    const issuer = yield* CouponIssuer
    return handlers
      .handle("issue", ({ path }) => Effect.flatMap(CurrentUser, (userId) => issuer.issue(path.couponId, userId)))
      .handle(
        "issueStatus",
        ({ path }) => Effect.flatMap(CurrentUser, (userId) => issuer.status(path.couponId, userId))
      )
      .handle("myCoupons", () => Effect.flatMap(CurrentUser, (userId) => issuer.myCoupons(userId)))
  }))

/** The API's handlers and middleware; needs the service's Layers (`CouponService.layer`). */
export const ApiLive = HttpApiBuilder.api(CouponApi).pipe(
  Layer.provide(Layer.mergeAll(AdminGroupLive, CouponsGroupLive)),
  Layer.provide(Layer.mergeAll(AdminAuthLive, UserIdentityLive, JsonBody.layer))
)

const issuePath = /^\/api\/coupons\/([^/?#]+)\/issue$/
const userIdHeaderKey = userIdHeader.toLowerCase()

/**
 * `POST /api/coupons/{couponId}/issue`, the request every user of a sale sends, answered ahead of
 * the HttpApi router (`FastRoute`). It takes well-formed requests only; a malformed coupon id or user
 * header is left to the HttpApi, whose typed 400/401 answers stay the single source of truth.
 */
export const IssueFastRoute = Effect.map(CouponIssuer, (issuer) =>
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
    handle: ({ couponId, userId }) => issuer.issue(couponId, userId)
  }))
