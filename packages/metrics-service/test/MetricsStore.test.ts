import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Freshness, MetricsModel, MetricsStore, Migrations } from "@kpipe/metrics-service"
import { Database } from "@kpipe/sql"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import { defaultShape, messedUp } from "./history.ts"
import { expected, isCatalog, stored } from "./utils.ts"

// Both tests assert on whole tables, so each test (each run of the property) takes a database of its own.
const StoreTest = MetricsStore.MetricsStore.Default.pipe(Layer.provideMerge(Database.layerTest(Migrations.all)))

describe("MetricsStore", () => {
  it.effect("keeps each topic's newest event time applied, per partition and never back, and a restart reports it", () =>
    Effect.gen(function*() {
      const store = yield* MetricsStore.MetricsStore
      const delivered = (partition: number, seconds: number) => ({
        record: { partition },
        event: { occurredAt: DateTime.unsafeMake(seconds * 1000) }
      })
      yield* store.recordNewest("catalog", [delivered(0, 100), delivered(0, 90), delivered(1, 120)])
      yield* store.recordNewest("catalog", [delivered(1, 110)])
      yield* store.recordNewest("orders", [delivered(2, 50)])
      yield* store.recordNewest("orders", [])
      assert.deepStrictEqual(
        (yield* store.newestEventTimes()).map(({ at, topic }) => [topic, DateTime.toEpochMillis(at)]),
        [["catalog", 120_000], ["orders", 50_000]]
      )
      // A service starting on this database: its freshness is there before any event is applied.
      const status = yield* Effect.flatMap(Freshness.Freshness, (freshness) => freshness.status()).pipe(
        Effect.provide(Freshness.layerReporter.pipe(Layer.provideMerge(Freshness.Freshness.Default)))
      )
      assert.deepStrictEqual(
        status.topics.map((t) => [t.topic, DateTime.toEpochMillis(t.newestEventAt)]),
        [["catalog", 120_000], ["orders", 50_000]]
      )
    }).pipe(Effect.provide(StoreTest)))

  it.effect.prop(
    "batches of any interleaving (likes and orders repeated too) store the metrics of the history applied once",
    [messedUp(defaultShape), FastCheck.integer({ min: 1, max: 7 })],
    ([{ deliveries, events }, batch]) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const store = yield* MetricsStore.MetricsStore
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
      }).pipe(Effect.provide(StoreTest)),
    { timeout: 120_000, fastCheck: { numRuns: 25 } }
  )

  it.effect("a cancellation before its order and an unlike before its like take nothing below zero", () =>
    Effect.gen(function*() {
      const store = yield* MetricsStore.MetricsStore
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
    }).pipe(Effect.provide(StoreTest)))
})
