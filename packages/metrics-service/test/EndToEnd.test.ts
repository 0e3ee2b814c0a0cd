import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { Ids } from "@kpipe/events"
import { Producer } from "@kpipe/kafka"
import { MetricsModel, MetricsStore } from "@kpipe/metrics-service"
import { AlertSink, Publisher, Topic } from "@kpipe/pipeline"
import { Eventually, TestKafka } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import { defaultShape, messedUp } from "./history.ts"
import {
  baseUrl,
  claimed,
  commerceClient,
  expected,
  isCatalog,
  metricsClient,
  metricsTest,
  startCommerce,
  stored,
  withPrefix
} from "./utils.ts"

const price = (text: string) => BigDecimal.unsafeFromString(text)

// One after another: a test's status figures count every consumer of the process (its own and the
// other tests' metrics-services), so no other test may apply events while one reads them.
describe.sequential("commerce-service → Kafka → metrics-service", () => {
  it.live(
    "likes, views and orders reach the metrics and ranking; re-delivered shuffled and repeated, reconciliation finds 0 drift, then a drift of buckets whose totals are right",
    () =>
      Effect.gen(function*() {
        const source = `${TestKafka.uniqueName("s3")}.`
        const copy = `${TestKafka.uniqueName("s3copy")}.`
        const commerce = yield* startCommerce(source)
        const shop = yield* commerceClient(commerce.baseUrl)
        const [alice, bob, carol] = yield* Effect.all([1, 2, 3].map((id) => commerceClient(commerce.baseUrl, id)))
        const mug = yield* shop.admin.createProduct({ payload: { name: "mug", price: price("12.5") } })
        const pen = yield* shop.admin.createProduct({ payload: { name: "pen", price: price("2") } })
        const lamp = yield* shop.admin.createProduct({ payload: { name: "lamp", price: price("40") } })
        const mugPath = { path: { productId: mug.productId } }
        for (const user of [alice!, bob!, carol!]) yield* user.likes.like(mugPath)
        yield* alice!.likes.like(mugPath)
        yield* bob!.likes.unlike(mugPath)
        yield* carol!.likes.like({ path: { productId: pen.productId } })
        for (let i = 0; i < 5; i++) yield* shop.catalog.view({ path: { productId: pen.productId }, headers: {} })
        yield* shop.catalog.view({ ...mugPath, headers: {} })
        const first = yield* alice!.orders.createOrder({
          headers: {},
          payload: { items: [{ productId: mug.productId, quantity: 2 }, { productId: lamp.productId, quantity: 1 }] }
        })
        yield* alice!.orders.pay({ path: { orderId: first.orderId } })
        const second = yield* bob!.orders.createOrder({
          headers: {},
          payload: { items: [{ productId: lamp.productId, quantity: 3 }] }
        })
        yield* bob!.orders.cancel({ path: { orderId: second.orderId } })
        // 3 + 1 + 1 likes (the second like of alice publishes nothing), 6 views; 2 + 2 order events
        const catalogCount = 11
        const orderCount = 4

        const catalogTopic = Topic.prefixed(SeedTopics.catalogEvents, source)
        const orderTopic = Topic.prefixed(SeedTopics.orderEvents, source)
        const records = [
          ...(yield* TestKafka.readTopic(catalogTopic.name, catalogCount)),
          ...(yield* TestKafka.readTopic(orderTopic.name, orderCount))
        ]
        assert.strictEqual(records.length, catalogCount + orderCount)

        yield* Effect.gen(function*() {
          const metricsContext = yield* Layer.build(metricsTest(commerce.baseUrl))
          const metrics = yield* metricsClient({ baseUrl: baseUrl(metricsContext) })
          // Every record 1 to 3 times, shuffled across topics and keys: unlikes before likes,
          // cancellations before their orders.
          const deliveries = FastCheck.sample(
            FastCheck.shuffledSubarray(records.flatMap((r, i) => Array.from({ length: 1 + (i % 3) }, () => r)), {
              minLength: records.reduce((n, _, i) => n + 1 + (i % 3), 0)
            }),
            { numRuns: 1, seed: 42 }
          )[0]!
          const before = yield* metrics.metrics.status()
          const producer = yield* Producer.Producer
          for (const record of deliveries) {
            yield* producer.send({
              topic: record.topic.replace(source, copy),
              messages: [{ key: record.key, value: record.value, headers: record.headers }]
            })
          }
          const report = yield* metrics.admin.reconcile().pipe(
            Effect.tap((report) => report.consistent ? Effect.void : Effect.sleep("250 millis")),
            Effect.repeat({ until: (report) => report.consistent }),
            Effect.timeout("60 seconds")
          )
          assert.deepStrictEqual(report.drift, [])
          assert.strictEqual(report.checkedProducts, 3)

          const figures = (productId: Ids.ProductId) =>
            Effect.map(
              metrics.metrics.productMetrics({ path: { productId } }),
              (m) => [m.likes, m.views, m.salesCount, BigDecimal.format(m.salesAmount), m.cancellations]
            )
          assert.deepStrictEqual(yield* figures(mug.productId), [2, 1, 2, "25", 0])
          assert.deepStrictEqual(yield* figures(pen.productId), [1, 5, 0, "0", 0])
          assert.deepStrictEqual(yield* figures(lamp.productId), [0, 0, 1, "40", 1])
          assert.deepStrictEqual(yield* figures(Ids.ProductId.make(999_999)), [0, 0, 0, "0", 0])

          const ranking = (by: "likes" | "views" | "sales", window: "day" | "week") =>
            Effect.map(
              metrics.metrics.ranking({ urlParams: { by, window, limit: 2 } }),
              (r) => r.entries.map((e) => [e.rank, e.productId, e.score])
            )
          assert.deepStrictEqual(yield* ranking("likes", "day"), [[1, mug.productId, 2], [2, pen.productId, 1]])
          assert.deepStrictEqual(yield* ranking("views", "week"), [[1, pen.productId, 5], [2, mug.productId, 1]])
          assert.deepStrictEqual(yield* ranking("sales", "day"), [[1, mug.productId, 2], [2, lamp.productId, 1]])

          // The counters move just after each commit, so a reconciliation can see the last batch first.
          const counted = (status: typeof before) =>
            [status.applied - before.applied, status.duplicates - before.duplicates] as const
          yield* Eventually.eventually(
            Effect.map(metrics.metrics.status(), (status) =>
              counted(status)[0] === catalogCount + orderCount &&
              counted(status)[1] === deliveries.length - records.length),
            "10 seconds",
            "the status counting every event applied once and every repeat as a duplicate"
          )
          const status = yield* metrics.metrics.status()
          assert.deepStrictEqual(counted(status), [catalogCount + orderCount, deliveries.length - records.length])
          assert.isDefined(status.freshnessSeconds)
          assert.sameMembers(status.topics.map(({ topic }) => topic), [
            catalogTopic.name.replace(source, copy),
            orderTopic.name.replace(source, copy)
          ])

          // Buckets can be wrong while every total is right: pen's day moved to the day before, one
          // like too many in mug's week. Reconciliation finds both, each in its bucket.
          const sql = yield* SqlClient.pipe(Effect.provide(metricsContext))
          yield* sql`UPDATE product_metric_buckets SET starts = starts - 1
            WHERE period = 'day' AND product_id = ${pen.productId}`
          yield* sql`UPDATE product_metric_buckets SET likes = likes + 1
            WHERE period = 'week' AND product_id = ${mug.productId}`
          const tampered = yield* metrics.admin.reconcile()
          assert.isFalse(tampered.consistent)
          assert.strictEqual(tampered.driftedProducts, 2)
          // Read twice, the consumers caught up in between: still there, so drift, not events in flight.
          assert.strictEqual(tampered.inFlightProducts, 0)
          assert.isTrue(tampered.consumersCaughtUp)
          assert.deepStrictEqual(
            tampered.drift.map((d) => [d.productId, d.period, d.field, d.expected, d.actual].join(" ")).sort(),
            [
              `${mug.productId} week likes 2 3`,
              `${pen.productId} day likes 0 1`,
              `${pen.productId} day likes 1 0`,
              `${pen.productId} day views 0 5`,
              `${pen.productId} day views 5 0`
            ].sort()
          )
          const penDays = tampered.drift.filter((d) => d.productId === pen.productId).map((d) => Date.parse(d.starts!))
          assert.strictEqual(Math.max(...penDays) - Math.min(...penDays), 86_400_000)
        }).pipe(withPrefix(copy), Effect.scoped)
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.provide(TestKafka.layer)),
    { timeout: 180_000 }
  )

  it.live(
    "property, against the broker and the database: a messed-up delivery stores the metrics of the history applied once",
    () =>
      Effect.gen(function*() {
        const sample = messedUp(defaultShape).filter(({ events }) => events.length >= 25)
        for (const { deliveries, events } of FastCheck.sample(sample, { numRuns: 2, seed: 3 })) {
          const prefix = `${TestKafka.uniqueName("s3prop")}.`
          yield* Effect.gen(function*() {
            const context = yield* Layer.build(metricsTest("http://127.0.0.1:9"))
            const catalog = Topic.prefixed(SeedTopics.catalogEvents, prefix)
            const orders = Topic.prefixed(SeedTopics.orderEvents, prefix)
            for (const event of deliveries) {
              yield* isCatalog(event)
                ? Publisher.publish(catalog, event as never)
                : Publisher.publish(orders, event as never)
            }
            const catalogEvents = new Set(events.filter(isCatalog).map((e) => e.eventId)).size
            const orderEvents = events.length - catalogEvents
            yield* Eventually.eventually(
              Effect.map(
                Effect.all([claimed(`${prefix}metrics-service-catalog`), claimed(`${prefix}metrics-service-orders`)]),
                ([c, o]) => c === catalogEvents && o === orderEvents
              ),
              "60 seconds",
              "every event claimed"
            ).pipe(Effect.provide(context))
            const held = yield* stored.pipe(Effect.provide(MetricsStore.MetricsStore.Default), Effect.provide(context))
            assert.deepStrictEqual(held, expected(MetricsModel.fold(events)))
          }).pipe(withPrefix(prefix), Effect.scoped)
        }
      }).pipe(Effect.provide(TestKafka.layer)),
    { timeout: 180_000 }
  )

  it.live(
    "undecodable records go to catalog-events-dlq / order-events-dlq, where the monitors record and alert them",
    () =>
      Effect.gen(function*() {
        const prefix = `${TestKafka.uniqueName("s3dlq")}.`
        const alerts: Array<AlertSink.Alert> = []
        const sink = Layer.succeed(
          AlertSink.AlertSink,
          AlertSink.AlertSink.of({ alert: (alert) => Effect.sync(() => void alerts.push(alert)) })
        )
        yield* Effect.gen(function*() {
          const context = yield* Layer.build(metricsTest("http://127.0.0.1:9", sink))
          const producer = yield* Producer.Producer
          for (const topic of [SeedTopics.catalogEvents, SeedTopics.orderEvents]) {
            yield* producer.send({ topic: `${prefix}${topic.name}`, messages: [{ key: "1", value: "{not json" }] })
          }
          const failed = Effect.flatMap(SqlClient, (sql) =>
            sql<{ topic: string; deadLetterTopic: string; errorTag: string }>`
              SELECT topic, dead_letter_topic, error_tag FROM kpipe_failed_events ORDER BY topic`).pipe(
              Effect.provide(context)
            )
          yield* Eventually.eventually(
            Effect.sync(() =>
              alerts.length === 2
            ),
            "60 seconds",
            "two dead-letter alerts"
          )
          assert.deepStrictEqual(yield* failed, [
            {
              topic: `${prefix}catalog-events`,
              deadLetterTopic: `${prefix}catalog-events-dlq`,
              errorTag: "DecodeError"
            },
            { topic: `${prefix}order-events`, deadLetterTopic: `${prefix}order-events-dlq`, errorTag: "DecodeError" }
          ])
          assert.deepStrictEqual(
            alerts.map((alert) => alert.title).sort(),
            [
              `Event dead-lettered from ${prefix}catalog-events: DecodeError`,
              `Event dead-lettered from ${prefix}order-events: DecodeError`
            ]
          )
        }).pipe(withPrefix(prefix), Effect.scoped)
      }).pipe(Effect.provide(TestKafka.layer)),
    { timeout: 120_000 }
  )
})
