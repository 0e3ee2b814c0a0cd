import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { type CreateOrderRequest, Order } from "@kpipe/contracts/CommerceApi"
import { Ids } from "@kpipe/events"
import { RawHttp } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { adminClient, client, outboxRows, TestLive } from "./utils.ts"

const price = (text: string) => BigDecimal.unsafeFromString(text)

/** Every order row: user, key and id, by id. */
const orderRows = Effect.flatMap(
  SqlClient,
  (sql) =>
    sql<{ orderId: string; userId: string; idempotencyKey: string | null }>`
      SELECT order_id::text, user_id::text, idempotency_key FROM orders ORDER BY order_id`
)

const orderCreated = Effect.map(
  outboxRows,
  (rows) => rows.filter((row) => row.eventType === "OrderCreated").map((row) => row.messageKey)
)

/** Two products, and a typed client per user. */
const setup = Effect.gen(function*() {
  const admin = yield* adminClient()
  const mug = yield* admin.admin.createProduct({ payload: { name: "mug", price: price("12.5") } })
  const pen = yield* admin.admin.createProduct({ payload: { name: "pen", price: price("2") } })
  return { mug: mug.productId, pen: pen.productId, alice: yield* client(7), bob: yield* client(8) }
})

type Items = CreateOrderRequest["items"]
const line = (productId: Ids.ProductId, quantity: number) => ({ productId, quantity })
const encodeOrder = Schema.encodeSync(Order)

describe("POST /api/orders with an Idempotency-Key", () => {
  it.live("the same key and body twice: one order, answered again, and one OrderCreated", () =>
    Effect.gen(function*() {
      const { alice, bob, mug, pen } = yield* setup
      const body = { items: [line(mug, 2), line(pen, 3)] as Items }
      const headers = { "idempotency-key": "checkout-1" }
      const first = yield* alice.orders.createOrder({ headers, payload: body })
      const again = yield* alice.orders.createOrder({ headers, payload: body })
      assert.deepStrictEqual(encodeOrder(again), encodeOrder(first))
      assert.strictEqual(BigDecimal.format(again.total), "31")
      // The key is the user's: another user's same key is another order.
      const bobs = yield* bob.orders.createOrder({ headers, payload: body })
      assert.notStrictEqual(bobs.orderId, first.orderId)
      // Without a key, as before: each request is an order.
      const plain1 = yield* alice.orders.createOrder({ headers: {}, payload: body })
      const plain2 = yield* alice.orders.createOrder({ headers: {}, payload: body })
      assert.notStrictEqual(plain1.orderId, plain2.orderId)

      // The answer is the order as it is now: paid after the first answer, a retry answers it paid.
      yield* alice.orders.pay({ path: { orderId: first.orderId } })
      const afterPay = yield* alice.orders.createOrder({ headers, payload: body })
      assert.deepInclude(afterPay, { orderId: first.orderId, status: "PAID" })

      assert.deepStrictEqual(yield* orderRows, [
        { orderId: String(first.orderId), userId: "7", idempotencyKey: "checkout-1" },
        { orderId: String(bobs.orderId), userId: "8", idempotencyKey: "checkout-1" },
        { orderId: String(plain1.orderId), userId: "7", idempotencyKey: null },
        { orderId: String(plain2.orderId), userId: "7", idempotencyKey: null }
      ])
      assert.deepStrictEqual(
        yield* orderCreated,
        [first.orderId, bobs.orderId, plain1.orderId, plain2.orderId].map(String)
      )
    }).pipe(Effect.provide(TestLive)))

  it.live("the same key with another body: 422 IdempotencyKeyReused, and nothing written", () =>
    Effect.gen(function*() {
      const { alice, mug, pen } = yield* setup
      const headers = { "idempotency-key": "checkout-2" }
      const body = { items: [line(mug, 2), line(pen, 3)] as Items }
      const first = yield* alice.orders.createOrder({ headers, payload: body })
      const before = [yield* orderRows, yield* outboxRows] as const
      const others: ReadonlyArray<Items> = [
        [line(mug, 2), line(pen, 4)], // another quantity
        [line(pen, 3), line(mug, 2)], // the same lines in another order
        [line(mug, 2)], // fewer lines
        [line(mug, 2), line(pen, 3), line(Ids.ProductId.make(999), 1)] // an unknown product: the key answers first
      ]
      for (const other of others) {
        const error = yield* Effect.flip(alice.orders.createOrder({ headers, payload: { items: other } }))
        assert.deepInclude(
          error,
          { _tag: "IdempotencyKeyReused", idempotencyKey: "checkout-2", orderId: first.orderId },
          JSON.stringify(other)
        )
      }
      const raw = yield* RawHttp.request(
        "POST",
        "/api/orders",
        JSON.stringify({ items: [{ productId: mug, quantity: 1 }] }),
        { ...headers, "x-user-id": "7" }
      )
      assert.deepStrictEqual([raw.status, raw.tag], [422, "IdempotencyKeyReused"])
      assert.deepStrictEqual([yield* orderRows, yield* outboxRows], before)
      // The original body is still answered with its order.
      const again = yield* alice.orders.createOrder({ headers, payload: body })
      assert.strictEqual(again.orderId, first.orderId)
    }).pipe(Effect.provide(TestLive)))

  it.live("concurrent requests with one key: exactly one order, each answered with it", () =>
    Effect.gen(function*() {
      const { alice, mug, pen } = yield* setup
      const headers = { "idempotency-key": "checkout-3" }
      const body = { items: [line(mug, 1), line(pen, 5)] as Items }
      const answers = yield* Effect.all(
        Array.from({ length: 24 }, () => alice.orders.createOrder({ headers, payload: body })),
        { concurrency: "unbounded" }
      )
      const ids = new Set(answers.map((order) => order.orderId))
      assert.strictEqual(ids.size, 1)
      assert.isTrue(answers.every((order) => BigDecimal.format(order.total) === "22.5"))
      assert.deepStrictEqual((yield* orderRows).map((row) => row.idempotencyKey), ["checkout-3"])
      assert.deepStrictEqual(yield* orderCreated, [String(answers[0]!.orderId)])
    }).pipe(Effect.provide(TestLive)))

  it.live("an empty or too long key is a typed 400, and nothing is written", () =>
    Effect.gen(function*() {
      const { mug } = yield* setup
      const body = JSON.stringify({ items: [{ productId: mug, quantity: 1 }] })
      for (const key of ["", "k".repeat(201)]) {
        const answer = yield* RawHttp.request("POST", "/api/orders", body, { "idempotency-key": key, "x-user-id": "7" })
        assert.deepStrictEqual([answer.status, answer.tag], [400, "HttpApiDecodeError"], `${key.length} characters`)
      }
      const longest = yield* RawHttp.request("POST", "/api/orders", body, {
        "idempotency-key": "k".repeat(200),
        "x-user-id": "7"
      })
      assert.strictEqual(longest.status, 201)
      assert.deepStrictEqual((yield* orderRows).map((row) => row.idempotencyKey), ["k".repeat(200)])
    }).pipe(Effect.provide(TestLive)))
})
