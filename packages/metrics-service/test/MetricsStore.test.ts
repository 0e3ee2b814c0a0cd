import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import { MetricsModel, MetricsStore, Migrations } from "@kpipe/metrics-service"
import { Database } from "@kpipe/sql"
import * as BigDecimal from "effect/BigDecimal"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import { defaultShape, messedUp, plain } from "./history.ts"

const StoreTest = MetricsStore.MetricsStore.Default.pipe(Layer.provideMerge(Database.layerTest(Migrations.all)))

/** What the store holds, in the model's terms. */
export const stored = Effect.gen(function*() {
  const store = yield* MetricsStore.MetricsStore
  const totals = (yield* store.page(0, 1_000_000))
    .filter((m) => plain(m).some((v) => v !== 0 && v !== "0"))
    .map((m) => [m.productId, plain(m)] as const)
  const buckets = (yield* store.buckets)
    .filter((b) => plain(b).some((v) => v !== 0 && v !== "0"))
    .map((b) => [MetricsModel.bucketKey(b.period, b.starts, b.productId), plain(b)] as const)
    .sort((a, b) => a[0].localeCompare(b[0]))
  return { totals, buckets }
})

export const expected = (metrics: MetricsModel.Metrics) => ({
  totals: [...metrics.totals].filter(([, f]) => plain(f).some((v) => v !== 0 && v !== "0"))
    .map(([id, f]) => [id, plain(f)] as const)
    .sort((a, b) => a[0] - b[0]),
  buckets: [...metrics.buckets].filter(([, f]) => plain(f).some((v) => v !== 0 && v !== "0"))
    .map(([key, f]) => [key, plain(f)] as const)
    .sort((a, b) => a[0].localeCompare(b[0]))
})

const isCatalog = (event: MetricsModel.Event) =>
  event.type === "LikeAdded" || event.type === "LikeRemoved" || event.type === "ProductViewed"

layer(StoreTest, { timeout: "60 seconds" })("MetricsStore", (it) => {
  it.effect.prop(
    "batches of any interleaving (likes and orders repeated too) store the metrics of the history applied once",
    [messedUp(defaultShape), FastCheck.integer({ min: 1, max: 7 })],
    ([{ deliveries, events }, batch]) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const store = yield* MetricsStore.MetricsStore
        yield* sql`TRUNCATE like_facts, order_facts, product_metrics, product_metric_buckets`
        // The consumer's claims drop repeated event ids before the store sees them; only views need it,
        // the facts of likes and orders absorb repeats by themselves, which this checks by leaving them in.
        const seenViews = new Set<string>()
        const arriving = deliveries.filter((event) =>
          event.type !== "ProductViewed" ||
          (!seenViews.has(event.eventId) && seenViews.add(event.eventId) !== undefined)
        )
        for (let i = 0; i < arriving.length; i += batch) {
          const chunk = arriving.slice(i, i + batch)
          yield* sql.withTransaction(Effect.all([
            store.applyCatalog(chunk.filter(isCatalog) as never),
            store.applyOrders(chunk.filter((event) => !isCatalog(event)) as never)
          ]))
        }
        assert.deepStrictEqual(yield* stored, expected(MetricsModel.fold(events)))
      }),
    { fastCheck: { numRuns: 25 } }
  )

  it.effect("a cancellation before its order and an unlike before its like take nothing below zero", () =>
    Effect.gen(function*() {
      const store = yield* MetricsStore.MetricsStore
      const sql = yield* SqlClient
      yield* sql`TRUNCATE like_facts, order_facts, product_metrics, product_metric_buckets`
      const sample = FastCheck.sample(messedUp({ ...defaultShape, products: 1, users: 1, orders: 2 }), {
        numRuns: 1,
        seed: 7
      })[0]!
      const reversed = [...sample.events].reverse()
      for (const event of reversed) {
        yield* isCatalog(event) ? store.applyCatalog([event as never]) : store.applyOrders([event as never])
        const m = yield* store.get(1 as never)
        assert.isTrue(m.likes >= 0 && m.views >= 0 && m.salesCount >= 0 && m.cancellations >= 0)
        assert.isFalse(BigDecimal.isNegative(m.salesAmount))
      }
      assert.deepStrictEqual(yield* stored, expected(MetricsModel.fold(sample.events)))
    }))
})
