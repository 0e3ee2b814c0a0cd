import * as OpenApi from "@effect/platform/OpenApi"
import { assert, describe, it } from "@effect/vitest"
import { CommerceApi, MetricsApi } from "@kpipe/contracts"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

const decodeOrder = Schema.decodeUnknownEither(CommerceApi.CreateOrderRequest)
const decodeProduct = Schema.decodeUnknownEither(CommerceApi.CreateProductRequest)

describe("CommerceApi and MetricsApi", () => {
  it("an order names each product once, 1 to 50 lines, 1 to 1,000 units each", () => {
    assert.isTrue(
      Either.isRight(decodeOrder({ items: [{ productId: 1, quantity: 2 }, { productId: 2, quantity: 1000 }] }))
    )
    for (
      const items of [
        [],
        [{ productId: 1, quantity: 1 }, { productId: 1, quantity: 2 }],
        [{ productId: 1, quantity: 0 }],
        [{ productId: 1, quantity: 1001 }],
        Array.from({ length: 51 }, (_, i) => ({ productId: i + 1, quantity: 1 }))
      ]
    ) {
      assert.isTrue(Either.isLeft(decodeOrder({ items })), JSON.stringify(items).slice(0, 80))
    }
  })

  it("a price is a decimal below a billion, so an order line stays Money", () => {
    assert.isTrue(Either.isRight(decodeProduct({ name: "mug", price: "999999999.99" })))
    for (const price of ["1000000000", "-1", "1e3", ""]) {
      assert.isTrue(Either.isLeft(decodeProduct({ name: "mug", price })), price)
    }
  })

  it("ProductMetrics carries the figures of ProductTotals, field for field", () => {
    assert.deepStrictEqual(
      Object.keys(MetricsApi.ProductMetrics.fields),
      Object.keys(CommerceApi.ProductTotals.fields).filter((field) => field !== "days")
    )
    assert.deepStrictEqual(
      Object.keys(CommerceApi.DayTotals.fields).filter((field) => field !== "day"),
      Object.keys(MetricsApi.ProductMetrics.fields).filter((field) => field !== "productId")
    )
  })

  it("the documents list every endpoint with its error statuses", () => {
    const commerce = OpenApi.fromApi(CommerceApi.CommerceApi)
    assert.deepStrictEqual(Object.keys(commerce.paths).sort(), [
      "/api/orders",
      "/api/orders/{orderId}",
      "/api/orders/{orderId}/cancel",
      "/api/orders/{orderId}/pay",
      "/api/product-totals",
      "/api/products",
      "/api/products/{productId}",
      "/api/products/{productId}/like",
      "/api/products/{productId}/views"
    ])
    const like = commerce.paths["/api/products/{productId}/like"]!.put!
    assert.includeMembers(Object.keys(like.responses), ["200", "400", "401", "404", "503"])
    const pay = commerce.paths["/api/orders/{orderId}/pay"]!.post!
    assert.includeMembers(Object.keys(pay.responses), ["200", "400", "401", "404", "409", "503"])
    // Adding products and the totals are admin endpoints; listing products stays open.
    for (const admin of [commerce.paths["/api/products"]!.post!, commerce.paths["/api/product-totals"]!.get!]) {
      assert.includeMembers(Object.keys(admin.responses), ["400", "401", "503"])
      assert.deepStrictEqual(admin.security, [{ adminToken: [] }])
    }
    assert.deepStrictEqual(commerce.paths["/api/products"]!.get!.security, [])
    const metrics = OpenApi.fromApi(MetricsApi.MetricsApi)
    assert.deepStrictEqual(Object.keys(metrics.paths).sort(), [
      "/api/metrics/reconciliation",
      "/api/metrics/status",
      "/api/products/ranking",
      "/api/products/{productId}/metrics"
    ])
    const reconcile = metrics.paths["/api/metrics/reconciliation"]!.post!
    assert.includeMembers(Object.keys(reconcile.responses), ["200", "401", "503"])
    assert.deepStrictEqual(reconcile.security, [{ adminToken: [] }])
  })
})
