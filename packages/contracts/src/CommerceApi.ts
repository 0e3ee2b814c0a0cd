import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids, Money, ProductMetricsEvents } from "@kpipe/events"
import * as BigDecimal from "effect/BigDecimal"
import * as Schema from "effect/Schema"
import { AdminAuth } from "./Admin.ts"
import * as Decimal from "./Decimal.ts"
import { IdempotencyKeyHeaders, IdempotencyKeyReused } from "./Idempotency.ts"
import { JsonBody } from "./JsonBody.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { line } from "./Text.ts"
import { UserIdentity } from "./Users.ts"

/**
 * The contract of commerce-service (S3's producer): products, likes, views and orders; every change
 * commits with its event (`catalog-events`, `order-events`). The user is the gateway's `X-User-Id`
 * (the same `UserIdentity` middleware as coupon-service); adding products and the totals are admin
 * endpoints (`CatalogAdminGroup`, `Admin.AdminAuth`).
 */

export const ProductName = line(200)

/** Prices stay below a billion, so that an order line (up to 1,000 units) is still `Money`. */
export const Price = Money.Money.pipe(Schema.lessThanBigDecimal(BigDecimal.make(10n ** 9n, 0)))

export class Product extends Schema.Class<Product>("Product")({
  productId: Ids.ProductId,
  // What is stored, read back: a name created before `ProductName` refused control characters still reads.
  name: Schema.String,
  price: Price,
  createdAt: Schema.DateTimeUtc
}) {}

export class CreateProductRequest extends Schema.Class<CreateProductRequest>("CreateProductRequest")({
  name: ProductName,
  price: Price
}) {}

export class ProductPage extends Schema.Class<ProductPage>("ProductPage")({
  products: Schema.Array(Product),
  /** Pass as `after` for the next page; absent on the last one. */
  next: Schema.optionalWith(Ids.ProductId, { exact: true })
}) {}

export class LikeState extends Schema.Class<LikeState>("LikeState")({
  productId: Ids.ProductId,
  userId: Ids.UserId,
  liked: Schema.Boolean,
  /** False when the user's like already was as asked: nothing was written and no event went out. */
  changed: Schema.Boolean
}) {}

export class ViewRecorded extends Schema.Class<ViewRecorded>("ViewRecorded")({
  productId: Ids.ProductId,
  eventId: Ids.EventId,
  viewedAt: Schema.DateTimeUtc
}) {}

export const OrderStatus = Schema.Literal("CREATED", "PAID", "CANCELLED")
export type OrderStatus = typeof OrderStatus.Type

export const Quantity = Schema.Int.pipe(Schema.between(1, 1000))

export const OrderLine = Schema.Struct({
  productId: Ids.ProductId,
  quantity: Quantity
}).annotations({ identifier: "OrderLine" })
export type OrderLine = typeof OrderLine.Type

export const maxOrderLines = 50

export class CreateOrderRequest extends Schema.Class<CreateOrderRequest>("CreateOrderRequest")({
  items: Schema.NonEmptyArray(OrderLine).pipe(
    Schema.maxItems(maxOrderLines),
    Schema.filter((items) => new Set(items.map((item) => item.productId)).size === items.length, {
      message: () => "each product may appear once in an order (give its quantity instead)"
    })
  )
}) {}

export class Order extends Schema.Class<Order>("Order")({
  orderId: Ids.OrderId,
  userId: Ids.UserId,
  status: OrderStatus,
  /** Each line's `amount` is the product's price at ordering times the quantity. */
  items: Schema.NonEmptyArray(ProductMetricsEvents.OrderItem),
  total: Money.Money,
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

/**
 * A product's figures on one UTC day: likes standing since their last change that day, views of
 * that day, sales of orders created that day and not cancelled, orders cancelled that day.
 */
export class DayTotals extends Schema.Class<DayTotals>("DayTotals")({
  /** `YYYY-MM-DD` (UTC). */
  day: Schema.String.pipe(Schema.pattern(/^\d{4}-\d{2}-\d{2}$/)),
  likes: Schema.Int,
  views: Schema.Int,
  salesCount: Schema.Int,
  salesAmount: Money.MoneySum,
  cancellations: Schema.Int
}) {}

/**
 * A product's figures, as commerce-service's tables say and as metrics-service keeps them. Counts
 * are exact JSON numbers up to 2^53 − 1 (a service fails rather than round one past it); the sales
 * amount is a `MoneySum`, without `Money`'s bound.
 */
export const productFigures = {
  productId: Ids.ProductId,
  /** Users whose like stands. */
  likes: Schema.Int,
  views: Schema.Int,
  /** Units in orders that are not cancelled. */
  salesCount: Schema.Int,
  salesAmount: Money.MoneySum,
  /** Cancelled orders that contained the product. */
  cancellations: Schema.Int
}

/** What commerce-service's own tables say about a product: the figures metrics-service must reach. */
export class ProductTotals extends Schema.Class<ProductTotals>("ProductTotals")({
  ...productFigures,
  /** The same figures per UTC day, for the days that have any, in day order. */
  days: Schema.Array(DayTotals)
}) {}

export class TotalsPage extends Schema.Class<TotalsPage>("TotalsPage")({
  totals: Schema.Array(ProductTotals),
  next: Schema.optionalWith(Ids.ProductId, { exact: true })
}) {}

export class ProductNotFound extends Schema.TaggedError<ProductNotFound>()(
  "ProductNotFound",
  { productId: Ids.ProductId, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class OrderNotFound extends Schema.TaggedError<OrderNotFound>()(
  "OrderNotFound",
  { orderId: Ids.OrderId, message: Schema.String },
  HttpApiSchema.annotations({ status: 404, description: "No such order, or another user's" })
) {}

export class OrderStateConflict extends Schema.TaggedError<OrderStateConflict>()(
  "OrderStateConflict",
  { orderId: Ids.OrderId, status: OrderStatus, message: Schema.String },
  HttpApiSchema.annotations({ status: 409, description: "The order's status does not allow the change" })
) {}

const productPath = Schema.Struct({ productId: Decimal.FromString.pipe(Schema.compose(Ids.ProductId)) })
const orderPath = Schema.Struct({ orderId: Decimal.FromString.pipe(Schema.compose(Ids.OrderId)) })

export const PageParams = Schema.Struct({
  after: Schema.optionalWith(Decimal.FromString.pipe(Schema.compose(Ids.ProductId)), { exact: true }),
  limit: Schema.optionalWith(Decimal.FromString.pipe(Schema.compose(Schema.Int), Schema.between(1, 1000)), {
    exact: true
  })
})

/** A view may be anonymous; a given `X-User-Id` must still be a positive integer. */
export const ViewHeaders = Schema.Struct({
  "x-user-id": Schema.optionalWith(Decimal.FromString.pipe(Schema.compose(Ids.UserId)), { exact: true })
})

export class CatalogGroup extends HttpApiGroup.make("catalog")
  .add(
    HttpApiEndpoint.get("listProducts", "/api/products")
      .setUrlParams(PageParams)
      .addSuccess(ProductPage)
  )
  .add(
    HttpApiEndpoint.get("getProduct", "/api/products/:productId")
      .setPath(productPath)
      .addSuccess(Product)
      .addError(ProductNotFound)
  )
  .add(
    HttpApiEndpoint.post("view", "/api/products/:productId/views")
      .setPath(productPath)
      .setHeaders(ViewHeaders)
      .addSuccess(ViewRecorded, { status: 202 })
      .addError(ProductNotFound)
      .annotate(OpenApi.Description, "Records a view (anonymous without X-User-Id) and publishes ProductViewed.")
  )
  .addError(ServiceUnavailable)
  .middleware(JsonBody)
{}

/**
 * Admin (`Admin.AdminAuth`, the service's `ADMIN_TOKEN`): adding products (at any price) is no
 * user's business, and the totals are every product's sales per day (what metrics-service's
 * reconciliation reads, with its `COMMERCE_ADMIN_TOKEN`). Same paths as before they were guarded.
 */
export class CatalogAdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createProduct", "/api/products")
      .setPayload(CreateProductRequest)
      .addSuccess(Product, { status: 201 })
  )
  .add(
    HttpApiEndpoint.get("totals", "/api/product-totals")
      .setUrlParams(PageParams)
      .addSuccess(TotalsPage)
      .annotate(OpenApi.Description, "Per product, what the tables say: metrics-service reconciles against it.")
  )
  .addError(ServiceUnavailable)
  .middleware(JsonBody)
  .middleware(AdminAuth)
{}

export class LikesGroup extends HttpApiGroup.make("likes")
  .add(
    HttpApiEndpoint.put("like", "/api/products/:productId/like")
      .setPath(productPath)
      .addSuccess(LikeState)
      .addError(ProductNotFound)
      .annotate(OpenApi.Description, "Likes the product; a second like changes nothing and publishes nothing.")
  )
  .add(
    HttpApiEndpoint.del("unlike", "/api/products/:productId/like")
      .setPath(productPath)
      .addSuccess(LikeState)
      .addError(ProductNotFound)
      .annotate(OpenApi.Description, "Takes the like back; without a standing like it changes nothing.")
  )
  .addError(ServiceUnavailable)
  .middleware(UserIdentity)
{}

export class OrdersGroup extends HttpApiGroup.make("orders")
  .add(
    HttpApiEndpoint.post("createOrder", "/api/orders")
      .setPayload(CreateOrderRequest)
      .setHeaders(IdempotencyKeyHeaders)
      .addSuccess(Order, { status: 201 })
      .addError(ProductNotFound)
      .addError(IdempotencyKeyReused)
      .annotate(
        OpenApi.Description,
        "Creates an order of the current user, priced from the catalog, and publishes OrderCreated. With an " +
          "Idempotency-Key, a retry of the same body answers the order the key created (no second order, no " +
          "second event); the key with another body is 422 IdempotencyKeyReused and writes nothing."
      )
  )
  .add(
    HttpApiEndpoint.get("getOrder", "/api/orders/:orderId")
      .setPath(orderPath)
      .addSuccess(Order)
      .addError(OrderNotFound)
  )
  .add(
    HttpApiEndpoint.post("pay", "/api/orders/:orderId/pay")
      .setPath(orderPath)
      .addSuccess(Order)
      .addError(OrderNotFound)
      .addError(OrderStateConflict)
      .annotate(OpenApi.Description, "Completes the payment of a CREATED order.")
  )
  .add(
    HttpApiEndpoint.post("cancel", "/api/orders/:orderId/cancel")
      .setPath(orderPath)
      .addSuccess(Order)
      .addError(OrderNotFound)
      .addError(OrderStateConflict)
      .annotate(OpenApi.Description, "Cancels a CREATED or PAID order.")
  )
  .addError(ServiceUnavailable)
  .middleware(JsonBody)
  .middleware(UserIdentity)
{}

export class CommerceApi extends HttpApi.make("commerce-service")
  .add(CatalogGroup)
  .add(CatalogAdminGroup)
  .add(LikesGroup)
  .add(OrdersGroup)
  .annotate(OpenApi.Title, "commerce-service")
{}
