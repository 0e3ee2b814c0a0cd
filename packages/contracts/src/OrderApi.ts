import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"
import * as Decimal from "./Decimal.ts"
import { IdempotencyKeyHeaders } from "./Idempotency.ts"
import { JsonBody } from "./JsonBody.ts"
import { IdempotencyKeyReused, InvalidQuantity, OrderNotFound, ProductNotFound } from "./OrderErrors.ts"
import { Order, OrderPage, PlaceOrderRequest, ProductList } from "./OrderModels.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { UserIdentity } from "./Users.ts"

/**
 * The contract of order-service (S2). The current user comes from the gateway's `X-User-Id`
 * (`Users.UserIdentity`, shared by every user-facing service: absent 401, malformed 400).
 */

export { idempotencyKeyHeader } from "./Idempotency.ts"

/** The optional `Idempotency-Key` (shared with commerce-service's `createOrder`: `Idempotency.ts`). */
export const PlaceOrderHeaders = IdempotencyKeyHeaders

const orderPath = Schema.Struct({ orderId: Decimal.FromString.pipe(Schema.compose(Ids.OrderId)) })

export const maxPageSize = 100

export const PageParams = Schema.Struct({
  page: Schema.optional(Decimal.FromString.pipe(Schema.compose(Schema.Int), Schema.positive())),
  pageSize: Schema.optional(
    Decimal.FromString.pipe(Schema.compose(Schema.Int), Schema.between(1, maxPageSize))
  )
})

/** Also served ahead of the router for speed (order-service's `Http.fastRoute`); the contract is this declaration. */
export const PlaceOrderEndpoint = HttpApiEndpoint.post("placeOrder", "/api/orders")
  .setPayload(PlaceOrderRequest)
  .setHeaders(PlaceOrderHeaders)
  .addSuccess(Order, { status: 201 })
  .addError(ProductNotFound)
  .addError(InvalidQuantity)
  .addError(IdempotencyKeyReused)
  .addError(ServiceUnavailable)
  .annotate(
    OpenApi.Description,
    "Places an order for the current user: 201 PENDING at once; CONFIRMED or CANCELLED once inventory answered."
  )

export class OrdersGroup extends HttpApiGroup.make("orders")
  .add(PlaceOrderEndpoint)
  .add(
    HttpApiEndpoint.get("getOrder", "/api/orders/:orderId")
      .setPath(orderPath)
      .addSuccess(Order)
      .addError(OrderNotFound)
      .addError(ServiceUnavailable)
  )
  .add(
    HttpApiEndpoint.get("myOrders", "/api/users/me/orders")
      .setUrlParams(PageParams)
      .addSuccess(OrderPage)
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Description, "The current user's orders, newest first.")
  )
  .middleware(JsonBody)
  .middleware(UserIdentity)
{}

export class ProductsGroup extends HttpApiGroup.make("products")
  .add(
    HttpApiEndpoint.get("listProducts", "/api/products")
      .addSuccess(ProductList)
      .addError(ServiceUnavailable)
  )
{}

export class OrderApi
  extends HttpApi.make("order-service").add(OrdersGroup).add(ProductsGroup).annotate(OpenApi.Title, "order-service")
{}
