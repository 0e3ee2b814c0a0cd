import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Ids, ProductMetricsEvents } from "@kpipe/events"
import { MetricsStore, Reconciliation } from "@kpipe/metrics-service"
import { Database } from "@kpipe/sql"
import { RawHttp, TestKafka } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as Config from "effect/Config"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { apiTest, commerceClient, metricsClient, startCommerce, TestLive } from "./utils.ts"

const day = "2030-01-03"

/** `count` orders, from order id `first` on, of 1,000 units of `productId` at the highest price. */
const goldOrders = (productId: number, first: number, count: number) =>
  Array.from({ length: count }, (_, i) =>
    new ProductMetricsEvents.OrderCreated({
      eventId: Ids.EventId.make(crypto.randomUUID()),
      orderId: Ids.OrderId.make(first + i),
      userId: Ids.UserId.make(1),
      items: [{
        productId: Ids.ProductId.make(productId),
        quantity: 1000,
        amount: BigDecimal.unsafeFromString("999999999000")
      }],
      occurredAt: DateTime.unsafeMake(`${day}T00:00:00Z`)
    }))

describe("figures past Money's bound and past 2^31", () => {
  it.live("sums past 10^15 and counts past 2^31 are answered exactly; a count past 2^53 is a typed error", () =>
    Effect.gen(function*() {
      const store = yield* MetricsStore.MetricsStore
      const sql = yield* SqlClient
      yield* store.applyOrders(goldOrders(1, 1, 1001))
      const api = yield* metricsClient()
      const metrics = yield* api.metrics.productMetrics({ path: { productId: Ids.ProductId.make(1) } })
      assert.strictEqual(metrics.salesCount, 1_001_000)
      assert.isTrue(BigDecimal.equals(metrics.salesAmount, BigDecimal.fromBigInt(1_000_999_998_999_000n)))

      yield* sql`UPDATE product_metrics SET views = 3000000000, sales_amount = 1e16`
      const raw = yield* RawHttp.request("GET", "/api/products/1/metrics")
      assert.deepInclude(raw.body, { views: 3_000_000_000, salesAmount: "10000000000000000" })

      yield* sql`UPDATE product_metrics SET views = 9007199254740993`
      const error = yield* Effect.flip(store.get(Ids.ProductId.make(1)))
      assert.strictEqual(error._tag, "ParseError")
      assert.strictEqual((yield* Effect.flip(store.page(0, 10)))._tag, "ParseError")
      assert.strictEqual((yield* RawHttp.request("GET", "/api/products/1/metrics")).status, 500)
    }).pipe(Effect.provide(TestLive)))

  it("a drift in a sum is written as a plain decimal", () => {
    const drift = Reconciliation.differences(Ids.ProductId.make(1), {
      likes: 0,
      views: 0,
      salesCount: 0,
      salesAmount: BigDecimal.fromBigInt(10n ** 16n),
      cancellations: 0
    }, undefined)
    assert.deepStrictEqual(drift.map((d) => [d.field, d.expected, d.actual]), [
      ["salesAmount", "10000000000000000", "0"]
    ])
  })

  it.live(
    "reconciliation against commerce-service compares sums past 10^15 exactly",
    () =>
      Effect.gen(function*() {
        const commerce = yield* startCommerce(`${TestKafka.uniqueName("s3big")}.`)
        const shop = yield* commerceClient(commerce.baseUrl)
        const gold = yield* shop.admin.createProduct({
          payload: { name: "gold", price: BigDecimal.unsafeFromString("999999999") }
        })
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient
          yield* sql`
            WITH o AS (
              INSERT INTO orders (user_id, status, total, created_at, updated_at)
              SELECT 1, 'CREATED', 999999999000, ${day}::timestamptz, ${day}::timestamptz
              FROM generate_series(1, 1001)
              RETURNING order_id
            )
            INSERT INTO order_items (order_id, line, product_id, quantity, amount)
            SELECT order_id, 0, ${gold.productId}, 1000, 999999999000 FROM o`
        }).pipe(Effect.provide(Database.layerConfig(Config.succeed(Redacted.make(commerce.databaseUrl)))))

        yield* Effect.gen(function*() {
          const store = yield* MetricsStore.MetricsStore
          const api = yield* metricsClient()
          yield* store.applyOrders(goldOrders(gold.productId, 1, 1000))
          const behind = yield* api.admin.reconcile()
          assert.isFalse(behind.consistent)
          assert.deepStrictEqual(
            behind.drift.map((d) => [d.period ?? "total", d.field, d.expected, d.actual].join(" ")).sort(),
            ["total", "day", "week"].flatMap((where) => [
              `${where} salesAmount 1000999998999000 999999999000000`,
              `${where} salesCount 1001000 1000000`
            ]).sort()
          )
          yield* store.applyOrders(goldOrders(gold.productId, 1001, 1))
          const report = yield* api.admin.reconcile()
          assert.deepStrictEqual(report.drift, [])
          assert.isTrue(report.consistent)
          assert.strictEqual(report.checkedProducts, 1)
          assert.strictEqual(report.checkedBuckets, 2)

          // A product only metrics-service holds drifts in its totals and in each of its buckets.
          const stray = Ids.ProductId.make(987_654)
          yield* store.applyCatalog([
            new ProductMetricsEvents.ProductViewed({
              eventId: Ids.EventId.make(crypto.randomUUID()),
              productId: stray,
              occurredAt: DateTime.unsafeMake(`${day}T12:00:00Z`)
            })
          ])
          const strayed = yield* api.admin.reconcile()
          assert.strictEqual(strayed.driftedProducts, 1)
          assert.deepStrictEqual(
            strayed.drift.map((d) => [d.productId, d.period ?? "total", d.field, d.expected, d.actual].join(" "))
              .sort(),
            ["total", "day", "week"].map((where) => `${stray} ${where} views 0 1`).sort()
          )
          assert.strictEqual(strayed.checkedBuckets, 4)
        }).pipe(Effect.provide(apiTest(commerce.baseUrl)))
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.provide(TestKafka.layer)),
    { timeout: 120_000 }
  )
})
