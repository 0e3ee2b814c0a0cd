import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Ids } from "@kpipe/events"
import { RawHttp } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as Effect from "effect/Effect"
import { adminClient, adminToken, client, outboxRows, TestLive } from "./utils.ts"

const price = (text: string) => BigDecimal.unsafeFromString(text)
const bearer = { authorization: `Bearer ${adminToken}` }

describe("CommerceApi", () => {
  it.live("products, likes (idempotent per user), views and the order lifecycle, each with its event", () =>
    Effect.gen(function*() {
      const admin = yield* adminClient()
      const alice = yield* client(7)
      const bob = yield* client(8)
      const mug = yield* admin.admin.createProduct({ payload: { name: "mug", price: price("12.5") } })
      const pen = yield* admin.admin.createProduct({ payload: { name: "pen", price: price("2") } })
      assert.deepStrictEqual(yield* admin.catalog.getProduct({ path: { productId: mug.productId } }), mug)
      const page = yield* admin.catalog.listProducts({ urlParams: { limit: 1 } })
      assert.deepStrictEqual(page.products.map((p) => p.name), ["mug"])
      assert.strictEqual(page.next, mug.productId)
      const rest = yield* admin.catalog.listProducts({ urlParams: { after: mug.productId } })
      assert.deepStrictEqual(rest.products.map((p) => p.name), ["pen"])
      assert.isUndefined(rest.next)

      assert.isTrue((yield* alice.likes.like({ path: { productId: mug.productId } })).changed)
      assert.isFalse((yield* alice.likes.like({ path: { productId: mug.productId } })).changed)
      assert.isFalse((yield* bob.likes.unlike({ path: { productId: mug.productId } })).changed)
      yield* bob.likes.like({ path: { productId: mug.productId } })
      assert.isTrue((yield* bob.likes.unlike({ path: { productId: mug.productId } })).changed)
      yield* admin.catalog.view({ path: { productId: mug.productId }, headers: {} })
      yield* alice.catalog.view({ path: { productId: mug.productId }, headers: { "x-user-id": Ids.UserId.make(7) } })

      const order = yield* alice.orders.createOrder({
        headers: {},
        payload: { items: [{ productId: mug.productId, quantity: 2 }, { productId: pen.productId, quantity: 3 }] }
      })
      assert.deepStrictEqual(order.items.map((i) => [i.productId, i.quantity, BigDecimal.format(i.amount)]), [
        [mug.productId, 2, "25"],
        [pen.productId, 3, "6"]
      ])
      assert.strictEqual(BigDecimal.format(order.total), "31")
      assert.strictEqual((yield* alice.orders.pay({ path: { orderId: order.orderId } })).status, "PAID")
      const paidAgain = yield* alice.orders.pay({ path: { orderId: order.orderId } }).pipe(Effect.flip)
      assert.deepInclude(paidAgain, { _tag: "OrderStateConflict", status: "PAID" })
      const foreign = yield* bob.orders.cancel({ path: { orderId: order.orderId } }).pipe(Effect.flip)
      assert.strictEqual(foreign._tag, "OrderNotFound")
      assert.strictEqual((yield* alice.orders.cancel({ path: { orderId: order.orderId } })).status, "CANCELLED")
      const cancelledAgain = yield* alice.orders.cancel({ path: { orderId: order.orderId } }).pipe(Effect.flip)
      assert.deepInclude(cancelledAgain, { _tag: "OrderStateConflict", status: "CANCELLED" })
      const second = yield* bob.orders.createOrder({
        headers: {},
        payload: { items: [{ productId: mug.productId, quantity: 1 }] }
      })

      const rows = yield* outboxRows
      assert.deepStrictEqual(rows.map((r) => [r.topic, r.messageKey, r.eventType]), [
        ["catalog-events", String(mug.productId), "LikeAdded"],
        ["catalog-events", String(mug.productId), "LikeAdded"],
        ["catalog-events", String(mug.productId), "LikeRemoved"],
        ["catalog-events", String(mug.productId), "ProductViewed"],
        ["catalog-events", String(mug.productId), "ProductViewed"],
        ["order-events", String(order.orderId), "OrderCreated"],
        ["order-events", String(order.orderId), "PaymentCompleted"],
        ["order-events", String(order.orderId), "OrderCancelled"],
        ["order-events", String(second.orderId), "OrderCreated"]
      ])
      assert.deepInclude(rows[2]!.payload, { userId: 8, productId: mug.productId })
      assert.isTrue(
        Date.parse(rows[2]!.payload.occurredAt as string) > Date.parse(rows[1]!.payload.occurredAt as string)
      )
      assert.deepInclude(rows[6]!.payload, { amount: "31" })

      const totals = yield* admin.admin.totals({ urlParams: {} })
      assert.deepStrictEqual(
        totals.totals.map((
          t
        ) => [t.productId, t.likes, t.views, t.salesCount, BigDecimal.format(t.salesAmount), t.cancellations]),
        [[mug.productId, 1, 2, 1, "12.5", 1], [pen.productId, 0, 0, 0, "0", 1]]
      )
      // Everything happened today (UTC): each product's one day holds its totals.
      assert.deepStrictEqual(
        totals.totals.map((t) =>
          t.days.map((d) => [d.likes, d.views, d.salesCount, BigDecimal.format(d.salesAmount), d.cancellations])
        ),
        [[[1, 2, 1, "12.5", 1]], [[0, 0, 0, "0", 1]]]
      )
      assert.isTrue(totals.totals.every((t) => t.days.every((d) => d.day === new Date().toISOString().slice(0, 10))))
    }).pipe(Effect.provide(TestLive)))

  it.live("adding products and the totals are admin endpoints: no token, a wrong one or no bearer is a typed 401", () =>
    Effect.gen(function*() {
      const refused: ReadonlyArray<Readonly<Record<string, string>>> = [
        {},
        { authorization: "Bearer wrong" },
        { authorization: "Bearer " },
        { authorization: "Basic YTpi" },
        { authorization: adminToken },
        { "x-user-id": "7" }
      ]
      const create = JSON.stringify({ name: "cheap", price: "0.01" })
      for (const headers of refused) {
        for (
          const [method, path, body] of [["POST", "/api/products", create], ["GET", "/api/product-totals"]] as const
        ) {
          const answer = yield* RawHttp.request(method, path, body, headers)
          assert.deepStrictEqual(
            [answer.status, answer.tag],
            [401, "Unauthorized"],
            `${method} ${path} ${JSON.stringify(headers)}`
          )
        }
      }
      const sql = yield* SqlClient
      assert.deepStrictEqual(yield* sql`SELECT name FROM products`, [])
      assert.deepStrictEqual(yield* outboxRows, [])
      // The typed client without the token: the contract's Unauthorized.
      const anonymous = yield* client(7)
      const typed = yield* anonymous.admin.createProduct({ payload: { name: "cheap", price: price("0.01") } }).pipe(
        Effect.flip
      )
      assert.strictEqual(typed._tag, "Unauthorized")
      assert.strictEqual((yield* Effect.flip(anonymous.admin.totals({ urlParams: {} })))._tag, "Unauthorized")
      assert.deepStrictEqual(yield* sql`SELECT name FROM products`, [])
      // The users' catalog endpoints stay open.
      const listed = yield* RawHttp.request("GET", "/api/products")
      assert.deepStrictEqual([listed.status, listed.body], [200, { products: [] }])
      // With the token, both work.
      const created = yield* RawHttp.request("POST", "/api/products", create, bearer)
      assert.strictEqual(created.status, 201, JSON.stringify(created.body))
      const totals = yield* RawHttp.request("GET", "/api/product-totals", undefined, bearer)
      assert.strictEqual(totals.status, 200, JSON.stringify(totals.body))
      assert.deepStrictEqual(yield* sql`SELECT name FROM products`, [{ name: "cheap" }])
    }).pipe(Effect.provide(TestLive)))

  it.live("unknown products and orders are typed 404s and write nothing", () =>
    Effect.gen(function*() {
      const alice = yield* client(7)
      const missing = Ids.ProductId.make(999)
      const cases: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>> = [
        alice.catalog.getProduct({ path: { productId: missing } }),
        alice.catalog.view({ path: { productId: missing }, headers: {} }),
        alice.likes.like({ path: { productId: missing } }),
        alice.likes.unlike({ path: { productId: missing } }),
        alice.orders.createOrder({ headers: {}, payload: { items: [{ productId: missing, quantity: 1 }] } })
      ]
      for (const request of cases) assert.strictEqual((yield* Effect.flip(request))._tag, "ProductNotFound")
      const orderId = Ids.OrderId.make(999)
      for (const request of [alice.orders.getOrder({ path: { orderId } }), alice.orders.pay({ path: { orderId } })]) {
        assert.strictEqual((yield* Effect.flip(request))._tag, "OrderNotFound")
      }
      assert.deepStrictEqual(yield* outboxRows, [])
    }).pipe(Effect.provide(TestLive)))

  it.live("bad input: typed 400 for bodies, paths and parameters; 401/400 for the user header", () =>
    Effect.gen(function*() {
      const admin = yield* adminClient()
      const product = yield* admin.admin.createProduct({ payload: { name: "cup", price: price("3") } })
      const id = product.productId
      const bad: ReadonlyArray<readonly [method: "POST" | "GET", path: string, body?: string]> = [
        ["POST", "/api/products", "{not json"],
        ["POST", "/api/products", JSON.stringify({ name: "", price: "1" })],
        ["POST", "/api/products", JSON.stringify({ name: "x", price: "-1" })],
        ["POST", "/api/products", JSON.stringify({ name: "x", price: "1000000000" })],
        ["POST", "/api/products", JSON.stringify({ name: "x", price: 5 })],
        ["POST", "/api/products", JSON.stringify({ name: "x".repeat(201), price: "1" })],
        ["POST", "/api/products", JSON.stringify({ name: "a\u0000b", price: "1" })],
        ["POST", "/api/products", JSON.stringify({ name: "a\nb", price: "1" })],
        ["GET", "/api/products/abc"],
        ["GET", "/api/products/0"],
        ["GET", "/api/products?limit=0"],
        ["GET", "/api/products?limit=1001"],
        ["GET", "/api/products?after=-3"],
        ["GET", "/api/product-totals?limit=x"],
        ["POST", "/api/products/1.5/views"]
      ]
      for (const [method, path, body] of bad) {
        const answer = yield* RawHttp.request(method, path, body, bearer)
        assert.strictEqual(answer.status, 400, `${method} ${path} ${body}`)
        assert.strictEqual(answer.tag, "HttpApiDecodeError", `${method} ${path} ${body}`)
      }
      const http = yield* HttpClient.HttpClient
      const send = (method: "POST" | "PUT" | "DELETE", path: string, userId: string | undefined, body?: unknown) =>
        Effect.gen(function*() {
          let request = HttpClientRequest.make(method)(path)
          if (userId !== undefined) request = HttpClientRequest.setHeader(request, "x-user-id", userId)
          if (body !== undefined) {
            request = HttpClientRequest.bodyText(request, JSON.stringify(body), "application/json")
          }
          const response = yield* http.execute(request)
          const json = (yield* response.json) as { readonly _tag?: string }
          return [response.status, json._tag] as const
        })
      const userCases: ReadonlyArray<readonly [method: "POST" | "PUT" | "DELETE", path: string, body?: unknown]> = [
        ["PUT", `/api/products/${id}/like`],
        ["DELETE", `/api/products/${id}/like`],
        ["POST", "/api/orders", { items: [{ productId: id, quantity: 1 }] }],
        ["POST", "/api/orders/1/pay"],
        ["POST", "/api/orders/1/cancel"]
      ]
      for (const [method, path, body] of userCases) {
        assert.deepStrictEqual(yield* send(method, path, undefined, body), [401, "MissingUserId"], `${method} ${path}`)
        for (const userId of ["abc", "0", "-4", "1.5", "99999999999999999"]) {
          assert.deepStrictEqual(yield* send(method, path, userId, body), [400, "InvalidUserId"], `${path} ${userId}`)
        }
      }
      assert.deepStrictEqual(yield* send("POST", `/api/products/${id}/views`, "zero"), [400, "HttpApiDecodeError"])
      const orderBodies: ReadonlyArray<unknown> = [
        { items: [] },
        { items: [{ productId: id, quantity: 0 }] },
        { items: [{ productId: id, quantity: 1001 }] },
        { items: [{ productId: id, quantity: 1.5 }] },
        { items: [{ productId: id, quantity: 1 }, { productId: id, quantity: 2 }] },
        { items: Array.from({ length: 51 }, (_, i) => ({ productId: i + 1, quantity: 1 })) },
        { items: [{ productId: "x", quantity: 1 }] },
        {}
      ]
      for (const body of orderBodies) {
        assert.deepStrictEqual(yield* send("POST", "/api/orders", "7", body), [400, "HttpApiDecodeError"])
      }
      for (const path of ["/api/orders/abc/pay", "/api/orders/0/cancel"]) {
        assert.deepStrictEqual(yield* send("POST", path, "7"), [400, "HttpApiDecodeError"])
      }
      const sql = yield* SqlClient
      assert.deepStrictEqual(yield* sql`SELECT name FROM products`, [{ name: "cup" }])
      assert.deepStrictEqual(yield* outboxRows, [])
    }).pipe(Effect.provide(TestLive)))

  it.live("totals stay exact past 10^15 in sales and past 2^31 in units", () =>
    Effect.gen(function*() {
      const admin = yield* adminClient()
      const sql = yield* SqlClient
      const gold = yield* admin.admin.createProduct({ payload: { name: "gold", price: price("999999999") } })
      const bar = yield* admin.admin.createProduct({ payload: { name: "bar", price: price("500000000") } })
      const bolt = yield* admin.admin.createProduct({ payload: { name: "bolt", price: price("1") } })
      const day = "2030-01-03"
      const orders = (productId: number, count: number, quantity: number, unitPrice: string) =>
        sql`
          WITH o AS (
            INSERT INTO orders (user_id, status, total, created_at, updated_at)
            SELECT 1, 'PAID', ${quantity}::numeric * ${unitPrice}::numeric, ${day}::timestamptz, ${day}::timestamptz
            FROM generate_series(1, ${count})
            RETURNING order_id
          )
          INSERT INTO order_items (order_id, line, product_id, quantity, amount)
          SELECT order_id, 0, ${productId}, ${quantity}, ${quantity}::numeric * ${unitPrice}::numeric FROM o`
      const figures = Effect.map(
        RawHttp.request("GET", "/api/product-totals", undefined, bearer),
        (answer) => {
          assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
          const body = answer.body as {
            readonly totals: ReadonlyArray<{
              readonly salesCount: number
              readonly salesAmount: string
              readonly days: ReadonlyArray<{ readonly salesCount: number; readonly salesAmount: string }>
            }>
          }
          return body.totals.map((t) => [t.salesCount, t.salesAmount, t.days.map((d) => [d.salesCount, d.salesAmount])])
        }
      )
      // 1,001 orders of 1,000 units at the highest price: their sum passes Money's bound.
      yield* orders(gold.productId, 1001, 1000, "999999999")
      // 10^16 exactly, which BigDecimal.format would write as "1e+16".
      yield* orders(bar.productId, 20_000, 1000, "500000000")
      assert.deepStrictEqual(yield* figures, [
        [1_001_000, "1000999998999000", [[1_001_000, "1000999998999000"]]],
        [20_000_000, "10000000000000000", [[20_000_000, "10000000000000000"]]],
        [0, "0", []]
      ])
      // Two rows of 2·10^9 units (more than an order may ask, as the column allows): 4·10^9 > 2^31.
      yield* orders(bolt.productId, 2, 2_000_000_000, "1")
      assert.deepStrictEqual((yield* figures)[2], [4_000_000_000, "4000000000", [[4_000_000_000, "4000000000"]]])
      const typed = yield* admin.admin.totals({ urlParams: { limit: 3 } })
      assert.isTrue(BigDecimal.equals(typed.totals[1]!.salesAmount, BigDecimal.fromBigInt(10n ** 16n)))
    }).pipe(Effect.provide(TestLive)))
})
