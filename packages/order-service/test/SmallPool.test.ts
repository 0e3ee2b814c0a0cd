import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { newProduct, newUser, place, settled, TestLive } from "./utils.ts"

// Every role in one process on a pool of two connections. The notifications consumer runs all its
// partitions at once, each in a transaction of its own, and each delivery row is written on another
// connection: with the pool's connections all held by those transactions, the rows' writes waited
// for a connection that never came, and nothing was notified (nor relayed) any more.
layer(TestLive("order-small-pool", { PG_MAX_CONNECTIONS: "2" }), { timeout: "120 seconds", excludeTestServices: true })(
  "order-service on a pool of two connections",
  (it) => {
    it.effect("orders from many customers at once are all confirmed and notified", () =>
      Effect.gen(function*() {
        const productId = yield* newProduct(100)
        const placed = yield* Effect.forEach(
          Array.from({ length: 16 }, () => newUser()),
          (userId) => Effect.map(place(userId, productId, 1), (order) => ({ userId, order })),
          { concurrency: "unbounded" }
        )
        const orders = yield* Effect.forEach(placed, ({ order, userId }) => settled(userId, order.orderId), {
          concurrency: "unbounded"
        })
        assert.deepStrictEqual(orders.map((order) => order.status), placed.map(() => "CONFIRMED"))
      }))
  }
)
