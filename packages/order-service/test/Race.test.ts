import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import { Ids, OrderEvents } from "@kpipe/events"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { Inventory } from "../src/Inventory.ts"
import { clientAs, eventually, newProduct, newUser, place, stockOf, TestLive } from "./utils.ts"

layer(TestLive("order-race"), { timeout: "120 seconds", excludeTestServices: true })("the last units", (it) => {
  it.effect("10 orders racing for the last 3 units: exactly 3 confirmed, 7 cancelled, stock 0", () =>
    Effect.gen(function*() {
      const productId = yield* newProduct(3)
      const users = Array.from({ length: 10 }, () => newUser())
      const placed = yield* Effect.forEach(users, (userId) => place(userId, productId, 1), { concurrency: "unbounded" })
      const statuses = yield* Effect.forEach(placed, (order, i) =>
        Effect.gen(function*() {
          const client = yield* clientAs(users[i]!)
          let status = "PENDING"
          yield* eventually(
            Effect.map(client.orders.getOrder({ path: { orderId: order.orderId } }), (current) => {
              status = current.status
              return status !== "PENDING"
            }),
            "30 seconds",
            `order ${order.orderId} settled`
          )
          return status
        }), { concurrency: "unbounded" })
      assert.strictEqual(statuses.filter((s) => s === "CONFIRMED").length, 3)
      assert.strictEqual(statuses.filter((s) => s === "CANCELLED").length, 7)
      assert.strictEqual(yield* stockOf(productId), 0)
    }))

  it.effect("reservations in concurrent transactions (as from several replicas) never take more than the stock", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const inventory = yield* Inventory
      const productId = Ids.ProductId.make(yield* newProduct(5))
      const now = yield* DateTime.now
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) =>
          inventory.reserve(
            new OrderEvents.OrderCreated({
              eventId: Ids.EventId.make(randomUUID()),
              orderId: Ids.OrderId.make(1_000_000_000 + productId * 100 + i),
              userId: Ids.UserId.make(newUser()),
              productId,
              quantity: 2,
              amount: BigDecimal.fromBigInt(20n),
              createdAt: now
            })
          ).pipe(sql.withTransaction),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(outcomes.filter((o) => o === "RESERVED").length, 2)
      assert.strictEqual(outcomes.filter((o) => o === "OUT_OF_STOCK").length, 18)
      assert.strictEqual(yield* stockOf(productId), 1)
    }))

  it.effect("a batch is reserved in its events' order, and a product without stock fails the batch", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const inventory = yield* Inventory
      const few = Ids.ProductId.make(yield* newProduct(5))
      const many = Ids.ProductId.make(yield* newProduct(100))
      const now = yield* DateTime.now
      const created = (i: number, productId: Ids.ProductId, quantity: number) =>
        new OrderEvents.OrderCreated({
          eventId: Ids.EventId.make(randomUUID()),
          orderId: Ids.OrderId.make(2_000_000_000 + few * 100 + i),
          userId: Ids.UserId.make(newUser()),
          productId,
          quantity,
          amount: BigDecimal.fromBigInt(20n),
          createdAt: now
        })
      const events = [created(0, few, 2), created(1, many, 50), created(2, few, 4), created(3, few, 3)]
      const outcomes = yield* inventory.reserveAll(events).pipe(sql.withTransaction)
      assert.deepStrictEqual(outcomes, ["RESERVED", "RESERVED", "OUT_OF_STOCK", "RESERVED"])
      assert.deepStrictEqual([yield* stockOf(few), yield* stockOf(many)], [0, 50])
      const reserved = yield* sql<{ orderId: string }>`
        SELECT order_id FROM inventory_reservations
        WHERE order_id = ANY(${events.map((event) => event.orderId)}::bigint[]) ORDER BY order_id`
      assert.deepStrictEqual(reserved.map((row) => Number(row.orderId)), [0, 1, 3].map((i) => events[i]!.orderId))

      const unknown = yield* inventory.reserveAll([created(4, many, 1), created(5, Ids.ProductId.make(987_654_321), 1)])
        .pipe(sql.withTransaction, Effect.flip)
      assert.strictEqual(unknown._tag, "StockNotFound")
      assert.strictEqual(yield* stockOf(many), 50)
    }))
})
