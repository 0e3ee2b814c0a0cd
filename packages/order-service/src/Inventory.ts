import { SqlClient } from "@effect/sql/SqlClient"
import { Ids, OrderEvents } from "@kpipe/events"
import { Outbox } from "@kpipe/pipeline"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { OrderTopics } from "./Topics.ts"

/** The inventory has no stock row for the product: not "out of stock", a fault worth retrying and then a dead letter. */
export class StockNotFound extends Data.TaggedError("StockNotFound")<{ readonly productId: Ids.ProductId }> {
  override get message() {
    return `No stock is kept for product ${this.productId}`
  }
}

export type Outcome = "RESERVED" | "OUT_OF_STOCK"

/**
 * S2's inventory: reserves an order's units in the consumer's transaction. The decrement is one
 * conditional UPDATE, so concurrent reservations (any number of replicas) queue on the product's
 * row and stock never goes below zero. Either answer goes out through the outbox in the same
 * transaction as the event's claim: `InventoryReserved`, or the compensation `InventoryFailed`,
 * which is published if and only if the failure was recorded (neither retried nor dead-lettered).
 */
export class Inventory extends Effect.Service<Inventory>()("@kpipe/order-service/Inventory", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const topics = yield* OrderTopics

    const reserve = Effect.fn("Inventory.reserve")(function*(event: OrderEvents.OrderCreated) {
      const { orderId, productId, quantity, userId } = event
      const occurredAt = yield* DateTime.now
      const eventId = Ids.EventId.make(randomUUID())
      const taken = yield* sql`
        UPDATE inventory SET stock = stock - ${quantity}
        WHERE product_id = ${productId} AND stock >= ${quantity} RETURNING stock`
      if (taken.length === 1) {
        yield* sql`
          INSERT INTO inventory_reservations (order_id, product_id, quantity)
          VALUES (${orderId}, ${productId}, ${quantity})`
        yield* Outbox.append(
          topics.inventoryReserved,
          new OrderEvents.InventoryReserved({ eventId, orderId, userId, productId, quantity, occurredAt })
        )
        return "RESERVED" satisfies Outcome
      }
      const known = yield* sql`SELECT 1 FROM inventory WHERE product_id = ${productId}`
      if (known.length === 0) return yield* new StockNotFound({ productId })
      yield* Outbox.append(
        topics.inventoryFailed,
        new OrderEvents.InventoryFailed({
          eventId,
          orderId,
          userId,
          productId,
          quantity,
          reason: "OUT_OF_STOCK",
          occurredAt
        })
      )
      return "OUT_OF_STOCK" satisfies Outcome
    })

    const stock = Effect.fn("Inventory.stock")(function*(productId: Ids.ProductId) {
      const [row] = yield* sql<{ stock: number }>`SELECT stock FROM inventory WHERE product_id = ${productId}`
      return row?.stock
    })

    return { reserve, stock } as const
  })
}) {}
