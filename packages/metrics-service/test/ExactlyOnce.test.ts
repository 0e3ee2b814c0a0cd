import { describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { Ids, ProductMetricsEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { Freshness, MetricsStore, Migrations, Workers } from "@kpipe/metrics-service"
import { DeadLetter, IdempotentConsumer, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ExactlyOnce, TestKafka, TestLogging } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { testConfig } from "./utils.ts"

interface Variant {
  readonly batchSize: number
}

// One event per transaction (each batch statement with one event), and the configured batch.
const variants: ReadonlyArray<Variant> = [{ batchSize: 1 }, { batchSize: 200 }]

const topics = new Map<string, Topic.Any>()
const base = Date.now()
const at = (index: number) => DateTime.unsafeMake(base + index * 1_000)
const amount = BigDecimal.unsafeFromString("12.50")

const freshTopic = <A extends Topic.EventShape, I>(seed: Topic.Topic<A, I>) =>
  Effect.gen(function*() {
    const topic = Topic.prefixed(seed, `${TestKafka.uniqueName("eo-metrics")}.`)
    topics.set(topic.name, topic)
    yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
    return topic.name
  })

/** The run's consumer: the service's own options on the run's topic, group and batch size. */
const running = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B>(
  options: IdempotentConsumer.Options<A, I, E, R, B>,
  args: ExactlyOnce.Replica<Variant>
) =>
  ExactlyOnce.replica(
    IdempotentConsumer.run,
    { ...options, topic: topics.get(args.topic)!, groupId: args.group, batchSize: args.variant.batchSize },
    args
  ).pipe(Layer.provide(DeadLetter.layer))

const duplicates = (group: string) => ExactlyOnce.taggedCount(IdempotentConsumer.duplicatesTotal, group)

// Likes added and removed, and views, of 5 products (the record key), by users who come back.
const catalogEvent = (index: number): ProductMetricsEvents.CatalogEvent => {
  const fields = {
    eventId: Ids.EventId.make(crypto.randomUUID()),
    productId: Ids.ProductId.make(1 + (index % 5)),
    userId: Ids.UserId.make(100 + (index % 3)),
    occurredAt: at(index)
  }
  return index % 3 === 0
    ? new ProductMetricsEvents.LikeAdded(fields)
    : index % 3 === 1
    ? new ProductMetricsEvents.LikeRemoved(fields)
    : new ProductMetricsEvents.ProductViewed(fields)
}

// Orders of 5 ids (the record key): created, paid, then some cancelled, in whatever order they come.
const orderEvent = (index: number): ProductMetricsEvents.OrderEvent => {
  const orderId = Ids.OrderId.make(1 + (index % 5))
  const eventId = Ids.EventId.make(crypto.randomUUID())
  const items = [{ productId: Ids.ProductId.make(1 + (index % 3)), quantity: 2, amount }] as const
  return index < 5
    ? new ProductMetricsEvents.OrderCreated({
      eventId,
      orderId,
      userId: Ids.UserId.make(7),
      items,
      occurredAt: at(index)
    })
    : index < 10
    ? new ProductMetricsEvents.PaymentCompleted({ eventId, orderId, amount, occurredAt: at(index) })
    : new ProductMetricsEvents.OrderCancelled({ eventId, orderId, items, occurredAt: at(index) })
}

const TestLive = Layer.mergeAll(MetricsStore.MetricsStore.Default, Freshness.Freshness.Default).pipe(
  Layer.provideMerge(
    Layer.mergeAll(TestKafka.layer, Database.layerTest([...Migrations.all, ExactlyOnce.appliedTable]))
  ),
  Layer.provideMerge(testConfig("http://127.0.0.1:9")),
  Layer.provideMerge(TestLogging.layer)
)

const catalog = ExactlyOnce.property<
  ProductMetricsEvents.CatalogEvent,
  Variant,
  Layer.Layer.Success<typeof TestLive>
>({
  topic: freshTopic(SeedTopics.catalogEvents),
  event: catalogEvent,
  encode: (e) => Effect.map(SeedTopics.catalogEvents.encode(e), (value) => ({ key: String(e.productId), value })),
  consumer: (args) =>
    Layer.unwrapEffect(Effect.map(Workers.consumerOptions, (options) => running(options.catalog, args))),
  applied: ExactlyOnce.appliedIn,
  duplicates,
  variants
})

const orders = ExactlyOnce.property<
  ProductMetricsEvents.OrderEvent,
  Variant,
  Layer.Layer.Success<typeof TestLive>
>({
  topic: freshTopic(SeedTopics.orderEvents),
  event: orderEvent,
  encode: (e) => Effect.map(SeedTopics.orderEvents.encode(e), (value) => ({ key: String(e.orderId), value })),
  consumer: (args) =>
    Layer.unwrapEffect(Effect.map(Workers.consumerOptions, (options) => running(options.orders, args))),
  applied: ExactlyOnce.appliedIn,
  duplicates,
  variants
})

const options = { timeout: 300_000, fastCheck: ExactlyOnce.runs(variants, 2) }

describe("batch consumers, exactly once whatever the duplicates, order, stopped replica and replay", () => {
  it.live.prop(
    "catalog events: each like, unlike and view counted once",
    ExactlyOnce.arbitraries(variants),
    ([sample]) => catalog(sample).pipe(Effect.provide(TestLive)),
    options
  )
  it.live.prop(
    "order events: each order, payment and cancellation counted once",
    ExactlyOnce.arbitraries(variants),
    ([sample]) => orders(sample).pipe(Effect.provide(TestLive)),
    options
  )
})
