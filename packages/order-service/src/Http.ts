import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type { SqlClient } from "@effect/sql/SqlClient"
import { idempotencyKeyHeader, OrderApi, PlaceOrderEndpoint, PlaceOrderHeaders } from "@kpipe/contracts/OrderApi"
import { PlaceOrderRequest } from "@kpipe/contracts/OrderModels"
import { CurrentUser } from "@kpipe/contracts/Users"
import type { Ids } from "@kpipe/events"
import { FastRoute, GatewayUser, JsonBody, RequestLimits, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Orders } from "./Orders.ts"

/** `placeOrder`, the same through the HttpApi and the fast route. */
const place = (orders: Orders, userId: Ids.UserId, payload: PlaceOrderRequest, key: Option.Option<string>) =>
  orders.place(userId, payload, key).pipe(
    // Our own events always encode; a failure there is a bug, not an answer.
    Effect.catchTag("ParseError", (error) => Effect.die(error)),
    Unavailable.orServiceUnavailable("Placing an order")
  )

const OrdersLive = HttpApiBuilder.group(OrderApi, "orders", (handlers) =>
  Effect.gen(function*() {
    const orders = yield* Orders
    return handlers
      .handle("placeOrder", ({ headers, payload }) =>
        Effect.flatMap(
          CurrentUser,
          (userId) => place(orders, userId, payload, Option.fromNullable(headers[idempotencyKeyHeader]))
        ))
      .handle("getOrder", ({ path }) =>
        Effect.flatMap(CurrentUser, (userId) => orders.get(userId, path.orderId)).pipe(
          Unavailable.orServiceUnavailable("Reading an order")
        ))
      .handle("myOrders", ({ urlParams }) =>
        Effect.flatMap(
          CurrentUser,
          (userId) => orders.list(userId, urlParams.page ?? 1, urlParams.pageSize ?? 20)
        ).pipe(Unavailable.orServiceUnavailable("Listing orders")))
  }))

const ProductsLive = HttpApiBuilder.group(
  OrderApi,
  "products",
  (handlers) =>
    Effect.map(Orders, (orders) =>
      handlers.handle("listProducts", () =>
        orders.products().pipe(
          Unavailable.orServiceUnavailable("Listing products")
        )))
)

/** The contract's handlers, with the user identity and JSON body middleware. */
export const layer = HttpApiBuilder.api(OrderApi).pipe(
  Layer.provide(Layer.mergeAll(OrdersLive, ProductsLive)),
  Layer.provide(Layer.mergeAll(GatewayUser.layer, JsonBody.layer))
)

const validHeaders = Schema.is(PlaceOrderHeaders)
/** Larger bodies (still within `HTTP_MAX_BODY_BYTES`) go through the HttpApi; an order is ~40 bytes. */
const fastBodyBytes = 4_096

/**
 * `POST /api/orders` answered ahead of the HttpApi router (`FastRoute`), without its request
 * wrapper, router, middleware and schema-driven decoding (the api process: 1.33 → 1.10 ms of CPU per
 * order in the README's benchmark).
 * It takes a request only when its user header, idempotency key, content type and declared length
 * are well-formed and within limits; anything else is left to the HttpApi, whose typed answers stay
 * the single source of truth. The body it reads is answered as the HttpApi would: JSON that does not
 * parse or decode is the same 400 HttpApiDecodeError.
 */
export const fastRoute = Effect.gen(function*() {
  const orders = yield* Orders
  const context = yield* Effect.context<SqlClient>()
  // HttpServe reads the same config first and fails the server on a bad one.
  const limits = yield* Effect.orDie(RequestLimits.config)
  const maxBody = Math.min(fastBodyBytes, limits.maxBodyBytes)
  return FastRoute.make(PlaceOrderEndpoint, {
    match: (request) => {
      if (request.url !== "/api/orders") return undefined
      const { headers } = request
      const userId = GatewayUser.fromHeaders(headers)
      const length = RequestLimits.declaredLength(headers) ?? 0
      if (
        userId === undefined || length < 1 || length > maxBody ||
        !(headers["content-type"] ?? "").toLowerCase().includes("application/json") ||
        !validHeaders(headers)
      ) return undefined
      return { request, userId, key: Option.fromNullable(headers[idempotencyKeyHeader]) }
    },
    handle: ({ key, request, userId }) =>
      Effect.flatMap(FastRoute.jsonBody(request, PlaceOrderRequest), (payload) => place(orders, userId, payload, key))
        .pipe(Effect.provide(context))
  })
})
