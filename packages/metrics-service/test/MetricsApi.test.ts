import * as HttpApiClient from "@effect/platform/HttpApiClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { MetricsApi } from "@kpipe/contracts/MetricsApi"
import { Ids, ProductMetricsEvents } from "@kpipe/events"
import { MetricsStore } from "@kpipe/metrics-service"
import { RawHttp } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import { adminToken, TestLive } from "./utils.ts"

const view = (productId: number, count: number) =>
  Array.from({ length: count }, () =>
    new ProductMetricsEvents.ProductViewed({
      eventId: Ids.EventId.make(crypto.randomUUID()),
      productId: Ids.ProductId.make(productId),
      occurredAt: DateTime.unsafeNow()
    }))

describe("MetricsApi", () => {
  it.live("ranking: top N by the window's figures, ties by product id, zero figures left out", () =>
    Effect.gen(function*() {
      const store = yield* MetricsStore.MetricsStore
      yield* store.applyCatalog([...view(5, 3), ...view(2, 3), ...view(9, 7), ...view(4, 1)])
      const api = yield* HttpApiClient.make(MetricsApi)
      const top = yield* api.metrics.ranking({ urlParams: { by: "views", limit: 3 } })
      assert.strictEqual(top.window, "day")
      assert.strictEqual(top.from, DateTime.formatIsoDateUtc(DateTime.unsafeNow()))
      assert.deepStrictEqual(top.entries.map((e) => [e.rank, e.productId, e.score]), [[1, 9, 7], [2, 2, 3], [3, 5, 3]])
      assert.deepStrictEqual((yield* api.metrics.ranking({ urlParams: { by: "likes", window: "week" } })).entries, [])
    }).pipe(Effect.provide(TestLive)))

  it.live("bad input is a typed 400; reconciliation without commerce-service is a typed 503", () =>
    Effect.gen(function*() {
      const bad = [
        "/api/products/ranking",
        "/api/products/ranking?by=price",
        "/api/products/ranking?by=likes&window=month",
        "/api/products/ranking?by=likes&limit=0",
        "/api/products/ranking?by=likes&limit=101",
        "/api/products/ranking?by=likes&limit=ten",
        "/api/products/abc/metrics",
        "/api/products/0/metrics",
        "/api/products/-2/metrics",
        "/api/products/1.5/metrics"
      ]
      for (const path of bad) {
        const answer = yield* RawHttp.request("GET", path)
        assert.strictEqual(answer.status, 400, path)
        assert.strictEqual(answer.tag, "HttpApiDecodeError", path)
      }
      const reconcile = yield* RawHttp.request("POST", "/api/metrics/reconciliation", undefined, {
        authorization: `Bearer ${adminToken}`
      })
      assert.deepStrictEqual([reconcile.status, reconcile.tag], [503, "ServiceUnavailable"])
    }).pipe(Effect.provide(TestLive)))

  it.live("reconciliation is an admin endpoint: no token or a wrong one is a typed 401", () =>
    Effect.gen(function*() {
      for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: "Basic YTpi" }]) {
        const answer = yield* RawHttp.request("POST", "/api/metrics/reconciliation", undefined, headers)
        assert.deepStrictEqual([answer.status, answer.tag], [401, "Unauthorized"], JSON.stringify(headers))
      }
    }).pipe(Effect.provide(TestLive)))

  it.live("with 100,000 products the top N is an index scan from the top of the window, not a sort", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* MetricsStore.MetricsStore
      yield* sql`
        INSERT INTO product_metric_buckets (period, starts, product_id, likes, views, sales_count)
        SELECT p, (now() AT TIME ZONE 'UTC')::date, g, g % 997, g % 1009, g % 101
        FROM generate_series(1, 100000) g, (VALUES ('day'), ('week')) AS v(p)`
      yield* sql`ANALYZE product_metric_buckets`
      for (const [by, column] of [["likes", "likes"], ["views", "views"], ["sales", "sales_count"]] as const) {
        const lines = (yield* sql<Record<string, string>>`
          EXPLAIN SELECT product_id, ${sql(column)} FROM product_metric_buckets
          WHERE period = 'week' AND starts = (now() AT TIME ZONE 'UTC')::date AND ${sql(column)} > 0
          ORDER BY ${sql(column)} DESC, product_id LIMIT 10`).map((row) => Object.values(row)[0]).join("\n")
        assert.match(lines, new RegExp(`Index (Only )?Scan using product_metric_buckets_${column}`), lines)
        assert.notMatch(lines, /Sort/, lines)
        const top = yield* store.ranking(by, "day", 3)
        assert.strictEqual(top.entries.length, 3)
        assert.isTrue(top.entries[0]!.score >= top.entries[2]!.score)
      }
    }).pipe(Effect.provide(TestLive)))
})
