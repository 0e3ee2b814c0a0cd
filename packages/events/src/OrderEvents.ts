import * as Schema from "effect/Schema"
import { EventId, OrderId, ProductId, UserId } from "./Ids.ts"
import { Quantity, version } from "./internal/fields.ts"
import { Money } from "./Money.ts"

export class OrderCreated extends Schema.Class<OrderCreated>("OrderCreated")({
  type: Schema.tag("OrderCreated"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  userId: UserId,
  productId: ProductId,
  quantity: Quantity,
  amount: Money,
  createdAt: Schema.DateTimeUtc
}) {}

/** The compensation the inventory consumer publishes when stock runs out, instead of retrying. */
export class InventoryFailed extends Schema.Class<InventoryFailed>("InventoryFailed")({
  type: Schema.tag("InventoryFailed"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  userId: UserId,
  productId: ProductId,
  quantity: Quantity,
  reason: Schema.Literal("OUT_OF_STOCK"),
  occurredAt: Schema.DateTimeUtc
}) {}

/** The inventory consumer reserved the order's stock. */
export class InventoryReserved extends Schema.Class<InventoryReserved>("InventoryReserved")({
  type: Schema.tag("InventoryReserved"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  userId: UserId,
  productId: ProductId,
  quantity: Quantity,
  occurredAt: Schema.DateTimeUtc
}) {}

/** The order's stock is reserved: it is CONFIRMED. */
export class OrderConfirmed extends Schema.Class<OrderConfirmed>("OrderConfirmed")({
  type: Schema.tag("OrderConfirmed"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  userId: UserId,
  productId: ProductId,
  quantity: Quantity,
  amount: Money,
  occurredAt: Schema.DateTimeUtc
}) {}

/** The order could not be fulfilled: it is CANCELLED, and nothing of it is held. */
export class OrderCancelled extends Schema.Class<OrderCancelled>("OrderCancelled")({
  type: Schema.tag("OrderCancelled"),
  version: version(1),
  eventId: EventId,
  orderId: OrderId,
  userId: UserId,
  productId: ProductId,
  quantity: Quantity,
  amount: Money,
  reason: Schema.Literal("OUT_OF_STOCK"),
  occurredAt: Schema.DateTimeUtc
}) {}

/** What became of an order, for the customer's notifications. */
export const OrderStatusChanged = Schema.Union(OrderConfirmed, OrderCancelled)
export type OrderStatusChanged = typeof OrderStatusChanged.Type
