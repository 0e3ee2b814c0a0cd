import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { OrderApi } from "@kpipe/contracts/OrderApi"
import { CurrentUser } from "@kpipe/contracts/Users"
import { GatewayUser, JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Orders } from "./Orders.ts"

const OrdersLive = HttpApiBuilder.group(OrderApi, "orders", (handlers) =>
  Effect.gen(function*() {
    const orders = yield* Orders
    return handlers
      .handle("placeOrder", ({ headers, payload }) =>
        Effect.flatMap(
          CurrentUser,
          (userId) => orders.place(userId, payload, Option.fromNullable(headers["idempotency-key"]))
        ).pipe(
          // Our own events always encode; a failure there is a bug, not an answer.
          Effect.catchTag("ParseError", (error) => Effect.die(error)),
          Unavailable.orServiceUnavailable("Placing an order")
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
