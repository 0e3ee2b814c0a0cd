import { SqlClient } from "@effect/sql/SqlClient"
import { Ids, OrderEvents } from "@kpipe/events"
import { Outbox } from "@kpipe/pipeline"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { unchecked } from "./internal/unchecked.ts"
import { OrderTopics } from "./Topics.ts"

/** The inventory has no stock row for the product: not "out of stock", a fault worth retrying and then a dead letter. */
export class StockNotFound extends Data.TaggedError("StockNotFound")<{ readonly productId: Ids.ProductId }> {
  override get message() {
    return `No stock is kept for product ${this.productId}`
  }
}

export type Outcome = "RESERVED" | "OUT_OF_STOCK"

/**
 * S2's inventory: reserves orders' units in the consumer's transaction. The products' rows are
 * locked first, so concurrent reservations (any number of replicas) queue on them, and
 * `CHECK (stock >= 0)` backs it up: stock never goes below zero. Either answer goes out through the outbox in the same
 * transaction as the event's claim: `InventoryReserved`, or the compensation `InventoryFailed`,
 * which is published if and only if the failure was recorded (neither retried nor dead-lettered).
 */
export class Inventory extends Effect.Service<Inventory>()("@kpipe/order-service/Inventory", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const topics = yield* OrderTopics

    /**
     * Reserves each order's units, in the events' order, in the caller's transaction: the products'
     * rows are locked (in product order, so concurrent batches queue instead of deadlocking), the
     * outcomes decided here, then written with one statement for the stock and the reservations
     * and one outbox append per outcome.
     */
    const reserveAll = Effect.fn("Inventory.reserveAll")(function*(events: ReadonlyArray<OrderEvents.OrderCreated>) {
      if (events.length === 0) return []
      const productIds = [...new Set(events.map((event) => event.productId))].sort((a, b) => a - b)
      const rows = yield* sql<{ productId: string; stock: number }>`
        SELECT product_id, stock FROM inventory WHERE product_id = ANY(${productIds}::bigint[])
        ORDER BY product_id FOR UPDATE`
      const stock = new Map(rows.map((row) => [Number(row.productId), row.stock]))
      const missing = productIds.find((productId) => !stock.has(productId))
      if (missing !== undefined) return yield* new StockNotFound({ productId: missing })
      const occurredAt = yield* DateTime.now
      const outcomes: Array<Outcome> = []
      const reserved: Array<OrderEvents.InventoryReserved> = []
      const failed: Array<OrderEvents.InventoryFailed> = []
      const taken = new Map<number, number>()
      for (const { orderId, productId, quantity, userId } of events) {
        const eventId = Ids.EventId.make(randomUUID())
        const left = stock.get(productId)!
        if (left >= quantity) {
          stock.set(productId, left - quantity)
          taken.set(productId, (taken.get(productId) ?? 0) + quantity)
          reserved.push(
            new OrderEvents.InventoryReserved({ eventId, orderId, userId, productId, quantity, occurredAt }, unchecked)
          )
          outcomes.push("RESERVED")
        } else {
          failed.push(
            new OrderEvents.InventoryFailed({
              eventId,
              orderId,
              userId,
              productId,
              quantity,
              reason: "OUT_OF_STOCK",
              occurredAt
            }, unchecked)
          )
          outcomes.push("OUT_OF_STOCK")
        }
      }
      if (reserved.length > 0) {
        yield* sql`
          WITH taken AS (
            UPDATE inventory i SET stock = i.stock - t.taken
            FROM unnest(${[...taken.keys()]}::bigint[], ${[...taken.values()]}::int[]) AS t(product_id, taken)
            WHERE i.product_id = t.product_id
            RETURNING 1
          )
          INSERT INTO inventory_reservations (order_id, product_id, quantity)
          SELECT * FROM unnest(${reserved.map((event) => event.orderId)}::bigint[], ${
          reserved.map((event) => event.productId)
        }::bigint[], ${reserved.map((event) => event.quantity)}::int[])`
      }
      yield* Outbox.append(topics.inventoryReserved, ...reserved)
      yield* Outbox.append(topics.inventoryFailed, ...failed)
      return outcomes
    })

    const reserve = Effect.fn("Inventory.reserve")(function*(event: OrderEvents.OrderCreated) {
      const [outcome] = yield* reserveAll([event])
      return outcome!
    })

    const stock = Effect.fn("Inventory.stock")(function*(productId: Ids.ProductId) {
      const [row] = yield* sql<{ stock: number }>`SELECT stock FROM inventory WHERE product_id = ${productId}`
      return row?.stock
    })

    return { reserve, reserveAll, stock } as const
  })
}) {}
