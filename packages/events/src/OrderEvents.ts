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
