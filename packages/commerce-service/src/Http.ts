import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { CommerceApi } from "@kpipe/contracts/CommerceApi"
import { idempotencyKeyHeader } from "@kpipe/contracts/Idempotency"
import { CurrentUser } from "@kpipe/contracts/Users"
import { AdminToken, GatewayUser, JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import { Config } from "./Config.ts"
import { Orders } from "./Orders.ts"
import { Products } from "./Products.ts"

/** A row that does not decode is a bug here, not the caller's fault: a 500 with its cause logged. */
const answered = (affected: string) => <A, E, R>(self: Effect.Effect<A, E | ParseResult.ParseError, R>) =>
  self.pipe(
    Effect.catchIf(
      (error): error is ParseResult.ParseError =>
        typeof error === "object" && error !== null && "_tag" in error && error._tag === "ParseError",
      (error) => Effect.die(error)
    ),
    Unavailable.orServiceUnavailable(affected)
  )

const CatalogLive = HttpApiBuilder.group(CommerceApi, "catalog", (handlers) =>
  Effect.gen(function*() {
    const products = yield* Products
    const catalog = answered("The catalog")
    return handlers
      .handle("listProducts", ({ urlParams }) => catalog(products.list(urlParams)))
      .handle("getProduct", ({ path }) => catalog(products.get(path.productId)))
      .handle("view", ({ headers, path }) =>
        catalog(products.view(path.productId, Option.fromNullable(headers["x-user-id"]))))
  }))

/** Behind `AdminAuth` (the contract's `CatalogAdminGroup`): adding products, and every product's totals. */
const AdminLive = HttpApiBuilder.group(CommerceApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const products = yield* Products
    const catalog = answered("The catalog")
    return handlers
      .handle("createProduct", ({ payload }) => catalog(products.create(payload)))
      .handle("totals", ({ urlParams }) => catalog(products.totals(urlParams)))
  }))

const LikesLive = HttpApiBuilder.group(CommerceApi, "likes", (handlers) =>
  Effect.gen(function*() {
    const products = yield* Products
    const likes = answered("Likes")
    return handlers
      .handle(
        "like",
        ({ path }) => Effect.flatMap(CurrentUser, (userId) => likes(products.like(path.productId, userId)))
      )
      .handle(
        "unlike",
        ({ path }) => Effect.flatMap(CurrentUser, (userId) => likes(products.unlike(path.productId, userId)))
      )
  }))

const OrdersLive = HttpApiBuilder.group(CommerceApi, "orders", (handlers) =>
  Effect.gen(function*() {
    const orders = yield* Orders
    const ordering = answered("Orders")
    return handlers
      .handle("createOrder", ({ headers, payload }) =>
        Effect.flatMap(
          CurrentUser,
          (userId) => ordering(orders.create(userId, payload, Option.fromNullable(headers[idempotencyKeyHeader])))
        ))
      .handle("getOrder", ({ path }) =>
        Effect.flatMap(CurrentUser, (userId) => ordering(orders.get(userId, path.orderId))))
      .handle("pay", ({ path }) =>
        Effect.flatMap(CurrentUser, (userId) => ordering(orders.pay(userId, path.orderId))))
      .handle("cancel", ({ path }) =>
        Effect.flatMap(CurrentUser, (userId) =>
          ordering(orders.cancel(userId, path.orderId))))
  }))

const adminAuth = Layer.unwrapEffect(Effect.map(Config, (config) => AdminToken.layer(config.adminToken)))

/** The implemented `CommerceApi` (`HttpApi.Api`); needs `Products`, `Orders` and `Config` (its `ADMIN_TOKEN`). */
export const layer = HttpApiBuilder.api(CommerceApi).pipe(
  Layer.provide(Layer.mergeAll(CatalogLive, AdminLive, LikesLive, OrdersLive)),
  Layer.provide(Layer.mergeAll(adminAuth, GatewayUser.layer, JsonBody.layer))
)
