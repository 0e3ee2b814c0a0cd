import * as Schema from "effect/Schema"
import { EventId, OrderId, ProductId, UserId } from "./Ids.ts"
import { Quantity, version } from "./internal/fields.ts"
import { Money } from "./Money.ts"

export class LikeAdded extends Schema.Class<LikeAdded>("ProductMetrics/LikeAdded")({
  type: Schema.tag("LikeAdded"),
  version: version(1),
  eventId: EventId,
  productId: ProductId,
  userId: UserId,
  occurredAt: Schema.DateTimeUtc
}) {}

export class LikeRemoved extends Schema.Class<LikeRemoved>("ProductMetrics/LikeRemoved")({
  type: Schema.tag("LikeRemoved"),
  version: version(1),
  eventId: EventId,
  productId: ProductId,
  userId: UserId,
  occurredAt: Schema.DateTimeUtc
}) {}

export class ProductViewed extends Schema.Class<ProductViewed>("ProductMetrics/ProductViewed")({
  type: Schema.tag("ProductViewed"),
  version: version(1),
  eventId: EventId,
  productId: ProductId,
  userId: Schema.optionalWith(UserId, { exact: true }),
  occurredAt: Schema.DateTimeUtc
}) {}

/** Every event on `catalog-events`. */
export const CatalogEvent = Schema.Union(LikeAdded, LikeRemoved, ProductViewed)
export type CatalogEvent = typeof CatalogEvent.Type

export const OrderItem = Schema.Struct({
  productId: ProductId,
  quantity: Quantity,
  amount: Money
}).annotations({ identifier: "ProductMetrics/OrderItem" })
export type OrderItem = typeof OrderItem.Type

export class OrderCreated extends Schema.Class<OrderCreated>("ProductMetrics/OrderCreated")({
  type: Schema.tag("OrderCreated"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  userId: UserId,
  items: Schema.NonEmptyArray(OrderItem),
  occurredAt: Schema.DateTimeUtc
}) {}

export class OrderCancelled extends Schema.Class<OrderCancelled>("ProductMetrics/OrderCancelled")({
  type: Schema.tag("OrderCancelled"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  items: Schema.NonEmptyArray(OrderItem),
  occurredAt: Schema.DateTimeUtc
}) {}

export class PaymentCompleted extends Schema.Class<PaymentCompleted>("ProductMetrics/PaymentCompleted")({
  type: Schema.tag("PaymentCompleted"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  amount: Money,
  occurredAt: Schema.DateTimeUtc
}) {}

/** Every event on `order-events`. */
export const OrderEvent = Schema.Union(OrderCreated, OrderCancelled, PaymentCompleted)
export type OrderEvent = typeof OrderEvent.Type
