import { Ids, Money } from "@kpipe/events"
import * as Schema from "effect/Schema"

/** order-service's models (S2). */

export const maxQuantity = 100

export class PlaceOrderRequest extends Schema.Class<PlaceOrderRequest>("PlaceOrderRequest")({
  productId: Ids.ProductId,
  /** 1 to `maxQuantity`; anything else is answered `InvalidQuantity`. */
  quantity: Schema.Int
}) {}

export const OrderStatus = Schema.Literal("PENDING", "CONFIRMED", "CANCELLED", "NEEDS_ATTENTION")
export type OrderStatus = typeof OrderStatus.Type

/** A channel's state: PENDING until a message went out (SENT) or the last attempt failed (FAILED, retried or dead-lettered). */
export const NotificationState = Schema.Literal("PENDING", "SENT", "FAILED")
export type NotificationState = typeof NotificationState.Type

export class ChannelNotification extends Schema.Class<ChannelNotification>("ChannelNotification")({
  state: NotificationState,
  attempts: Schema.Int.pipe(Schema.nonNegative())
}) {}

export class Notifications extends Schema.Class<Notifications>("Notifications")({
  email: ChannelNotification,
  sms: ChannelNotification
}) {}

export class Order extends Schema.Class<Order>("Order")({
  orderId: Ids.OrderId,
  userId: Ids.UserId,
  productId: Ids.ProductId,
  quantity: Schema.Int.pipe(Schema.positive()),
  unitPrice: Money.Money,
  /** `unitPrice × quantity`, computed by the service; never taken from the client. */
  amount: Money.Money,
  status: OrderStatus,
  /** Why the order is CANCELLED (e.g. OUT_OF_STOCK) or NEEDS_ATTENTION (the failure that dead-lettered it). */
  reason: Schema.NullOr(Schema.String),
  notifications: Notifications,
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

export class OrderPage extends Schema.Class<OrderPage>("OrderPage")({
  items: Schema.Array(Order),
  page: Schema.Int.pipe(Schema.positive()),
  pageSize: Schema.Int.pipe(Schema.positive()),
  total: Schema.Int.pipe(Schema.nonNegative())
}) {}

export class Product extends Schema.Class<Product>("Product")({
  productId: Ids.ProductId,
  name: Schema.String,
  price: Money.Money,
  /** Units not reserved yet. */
  available: Schema.Int.pipe(Schema.nonNegative())
}) {}

export class ProductList extends Schema.Class<ProductList>("ProductList")({
  items: Schema.Array(Product)
}) {}
