// metrics-service benchmark against the real broker and PostgreSQL on this machine:
//   1. BENCH_EVENTS mixed catalog / order events (hot products skewed, ~10 % delivered twice, the two
//      topics' records interleaved and shuffled within windows) are published first; then the
//      consumers start and the time until every record is applied gives events/s from Kafka, end to
//      end. The stored metrics are then compared with `MetricsModel.fold` of the history: drift must be 0.
//   2. Views offered at BENCH_VIEW_RATE per second for BENCH_VIEW_SECONDS: the apply lag (commit
//      minus event time) of each view, p50 / p90 / p99.
// Usage: pnpm bench:metrics. Smoke run: BENCH_EVENTS=5000 BENCH_VIEW_RATE=200 BENCH_VIEW_SECONDS=3 pnpm bench:metrics
import { SeedTopics } from "@kpipe/contracts"
import { Ids, ProductMetricsEvents } from "@kpipe/events"
import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { AlertSink, IdempotentConsumer, Publisher, Topic } from "@kpipe/pipeline"
import { ConsumerSettings } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Arr from "effect/Array"
import * as BigDecimal from "effect/BigDecimal"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { performance } from "node:perf_hooks"
import * as MetricsConfig from "../src/Config.ts"
import * as Freshness from "../src/Freshness.ts"
import * as MetricsModel from "../src/MetricsModel.ts"
import { MetricsStore } from "../src/MetricsStore.ts"
import * as Migrations from "../src/Migrations.ts"
import * as Reconciliation from "../src/Reconciliation.ts"
import * as Topics from "../src/Topics.ts"
import * as Workers from "../src/Workers.ts"
import * as SpanProfile from "./spanProfile.ts"

const positive = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

const BenchConfig = Config.all({
  events: positive("BENCH_EVENTS", 200_000),
  products: positive("BENCH_PRODUCTS", 10_000),
  users: positive("BENCH_USERS", 5_000),
  // The service's defaults (CONSUMER_BATCH_SIZE, KAFKA_MAX_BYTES_PER_PARTITION).
  batchSize: positive("BENCH_BATCH_SIZE", 10_000),
  fetchBytes: positive("BENCH_FETCH_BYTES", 4 * 1024 * 1024),
  partitionsConcurrency: positive("BENCH_PARTITIONS_CONCURRENCY", 1),
  viewRate: positive("BENCH_VIEW_RATE", 5_000),
  viewSeconds: positive("BENCH_VIEW_SECONDS", 30),
  profile: Config.boolean("BENCH_PROFILE").pipe(Config.withDefault(false))
})

type BenchConfig = Config.Config.Success<typeof BenchConfig>

type Event = MetricsModel.Event

/** A deterministic pseudo-random source, so that runs are comparable. */
const random = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff
  return seed / 0x7fffffff
}

const eventId = () => Ids.EventId.make(crypto.randomUUID())

/** `count` events as commerce-service would write them: hot products skewed (cube of a uniform draw). */
const generate = (count: number, products: number, users: number) => {
  const next = random(17)
  const hot = () => Ids.ProductId.make(1 + Math.floor(products * next() ** 3))
  const start = Date.now() - 6 * 86_400_000
  let clock = start
  const at = () => DateTime.unsafeMake(clock += 2)
  const liked = new Map<string, boolean>()
  const events: Array<Event> = []
  let orderId = 0
  while (events.length < count) {
    const roll = next()
    if (roll < 0.5) {
      events.push(new ProductMetricsEvents.ProductViewed({ eventId: eventId(), productId: hot(), occurredAt: at() }))
    } else if (roll < 0.8) {
      const productId = hot()
      const userId = Ids.UserId.make(1 + Math.floor(users * next()))
      const key = `${productId}:${userId}`
      const likes = !(liked.get(key) ?? false)
      liked.set(key, likes)
      const fields = { eventId: eventId(), productId, userId, occurredAt: at() }
      events.push(likes ? new ProductMetricsEvents.LikeAdded(fields) : new ProductMetricsEvents.LikeRemoved(fields))
    } else {
      const id = Ids.OrderId.make(++orderId)
      const lines = new Map<number, number>()
      for (let i = 0, n = 1 + Math.floor(next() * 3); i < n; i++) lines.set(hot(), 1 + Math.floor(next() * 4))
      const items = [...lines].map(([productId, quantity]) => ({
        productId: Ids.ProductId.make(productId),
        quantity,
        amount: BigDecimal.normalize(BigDecimal.make(BigInt(quantity * (100 + (productId % 900))), 1))
      })) as unknown as readonly [ProductMetricsEvents.OrderItem, ...Array<ProductMetricsEvents.OrderItem>]
      events.push(
        new ProductMetricsEvents.OrderCreated({
          eventId: eventId(),
          orderId: id,
          userId: Ids.UserId.make(1),
          items,
          occurredAt: at()
        })
      )
      if (next() < 0.6) {
        events.push(
          new ProductMetricsEvents.PaymentCompleted({
            eventId: eventId(),
            orderId: id,
            amount: BigDecimal.normalize(BigDecimal.sumAll(items.map((item) => item.amount))),
            occurredAt: at()
          })
        )
      }
      if (next() < 0.2) {
        events.push(
          new ProductMetricsEvents.OrderCancelled({ eventId: eventId(), orderId: id, items, occurredAt: at() })
        )
      }
    }
  }
  // Deliveries: ~10 % twice, then shuffled within windows of 2,000, across topics and keys.
  const deliveries = events.flatMap((event) => next() < 0.1 ? [event, event] : [event])
  for (let from = 0; from < deliveries.length; from += 2_000) {
    const to = Math.min(deliveries.length, from + 2_000)
    for (let i = to - 1; i > from; i--) {
      const j = from + Math.floor(next() * (i - from + 1))
      ;[deliveries[i], deliveries[j]] = [deliveries[j]!, deliveries[i]!]
    }
  }
  return { events, deliveries }
}

const isCatalog = (event: Event): event is ProductMetricsEvents.CatalogEvent =>
  event.type === "LikeAdded" || event.type === "LikeRemoved" || event.type === "ProductViewed"

const publishAll = (prefix: string, deliveries: ReadonlyArray<Event>) =>
  Effect.gen(function*() {
    const catalog = Topic.prefixed(SeedTopics.catalogEvents, prefix)
    const orders = Topic.prefixed(SeedTopics.orderEvents, prefix)
    for (let i = 0; i < deliveries.length; i += 2_000) {
      const chunk = deliveries.slice(i, i + 2_000)
      const c = chunk.filter(isCatalog)
      const o = chunk.filter((event): event is ProductMetricsEvents.OrderEvent => !isCatalog(event))
      yield* Effect.all([Publisher.publish(catalog, ...c), Publisher.publish(orders, ...o)], { concurrency: 2 })
    }
  })

const counts = (phase: string) =>
  Effect.map(
    Effect.all([
      Metric.value(IdempotentConsumer.appliedTotal.pipe(Metric.tagged("phase", phase))),
      Metric.value(IdempotentConsumer.duplicatesTotal.pipe(Metric.tagged("phase", phase)))
    ]),
    ([a, d]) => ({ applied: a.count, duplicates: d.count })
  )

const waitFor = (phase: string, done: (counts: { applied: number; duplicates: number }) => boolean) =>
  Effect.gen(function*() {
    while (!done(yield* counts(phase))) yield* Effect.sleep("50 millis")
  })

const withPrefix = (prefix: string) =>
  Effect.withConfigProvider(
    ConfigProvider.fromMap(new Map([["TOPIC_PREFIX", prefix]])).pipe(
      ConfigProvider.orElse(() => ConfigProvider.fromEnv())
    )
  )

/**
 * The consumers, dead-letter monitors and freshness gauge of metrics-service under `TOPIC_PREFIX`,
 * their metrics tagged with `phase` (the fibers they fork inherit the tag).
 */
const startWorkers = (phase: string, config: BenchConfig) =>
  Layer.build(
    Workers.layer.pipe(
      Layer.provide(Layer.mergeAll(MetricsStore.Default, Freshness.Freshness.Default)),
      Layer.provide(MetricsConfig.layer({
        port: 0,
        replica: 0,
        commerceUrl: "http://127.0.0.1:9",
        adminToken: Redacted.make("bench"),
        commerceAdminToken: Redacted.make("bench"),
        reconciliationSettle: Duration.seconds(10),
        batchSize: config.batchSize,
        maxRetries: 3,
        fetchBytesPerPartition: config.fetchBytes,
        partitionsConcurrency: config.partitionsConcurrency,
        kafka: { ...ConsumerSettings.defaults, maxWaitTimeInMs: 100, minBytes: 1 }
      }))
    )
  ).pipe(Effect.tagMetrics("phase", phase))

/** 1. Throughput from Kafka and drift. */
const throughput = (config: BenchConfig) =>
  Effect.gen(function*() {
    const prefix = `${TestKafka.uniqueName("bench-metrics")}.`
    yield* Effect.logInfo(`generating ${config.events} events over ${config.products} products`)
    const { deliveries, events } = generate(config.events, config.products, config.users)
    yield* Topics.layer.pipe(Layer.build, Effect.scoped, withPrefix(prefix))
    const t0 = performance.now()
    yield* publishAll(prefix, deliveries)
    yield* Effect.logInfo(
      `published ${deliveries.length} records (${deliveries.length - events.length} duplicates) in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s; consuming`
    )
    const profile = yield* SpanProfile.make
    const cpuBefore = yield* SpanProfile.cpu
    const started = performance.now()
    yield* startWorkers("throughput", config).pipe(
      withPrefix(prefix),
      config.profile ? Effect.withTracer(profile.tracer) : (effect) => effect
    )
    yield* waitFor("throughput", ({ applied, duplicates }) => applied + duplicates >= deliveries.length)
    const seconds = (performance.now() - started) / 1000
    const cpuAfter = yield* SpanProfile.cpu
    if (config.profile) {
      process.stdout.write(
        `\nspans (throughput phase, ${seconds.toFixed(1)} s):\n${profile.report(seconds).join("\n")}\n`
      )
    }
    const after = yield* counts("throughput")

    const model = MetricsModel.fold(events)
    const store = yield* MetricsStore
    const stored = new Map((yield* store.page(0, 10_000_000)).map((m) => [m.productId as number, m]))
    const check = Reconciliation.collector()
    for (const [productId, figures] of model.totals) {
      check.check({ productId: Ids.ProductId.make(productId), ...figures }, stored.get(productId))
    }
    for (const [productId, metrics] of stored) {
      if (!model.totals.has(productId)) check.check({ ...metrics, ...MetricsModel.zero() }, metrics)
    }
    // The day and week buckets too, product by product.
    const expectedBuckets = new Map<number, Map<string, MetricsModel.Figures & Reconciliation.Bucket>>()
    for (const [key, figures] of model.buckets) {
      const [period, starts, productId] = key.split("|") as ["day" | "week", string, string]
      const forProduct = expectedBuckets.get(Number(productId)) ?? new Map()
      expectedBuckets.set(Number(productId), forProduct.set(`${period}|${starts}`, { period, starts, ...figures }))
    }
    const storedBuckets = Arr.groupBy(yield* store.buckets, (bucket) => String(bucket.productId))
    for (const productId of new Set([...expectedBuckets.keys(), ...Object.keys(storedBuckets).map(Number)])) {
      check.checkBuckets(
        Ids.ProductId.make(productId),
        expectedBuckets.get(productId) ?? new Map(),
        storedBuckets[productId] ?? []
      )
    }
    const report = check.report()
    return [
      `events: ${events.length} distinct, ${deliveries.length} records (${
        deliveries.length - events.length
      } duplicates)`,
      `consumer: ${seconds.toFixed(1)} s → ${(deliveries.length / seconds).toFixed(0)} records/s (${
        (events.length / seconds).toFixed(0)
      } applied/s); applied ${after.applied}, duplicates skipped ${after.duplicates}`,
      `cpu: node ${(cpuAfter.node - cpuBefore.node).toFixed(1)} s, postgres ${
        (cpuAfter.postgres - cpuBefore.postgres).toFixed(1)
      } s (per 10,000 records: ${((cpuAfter.node - cpuBefore.node) / deliveries.length * 1e4).toFixed(2)} s, ${
        ((cpuAfter.postgres - cpuBefore.postgres) / deliveries.length * 1e4).toFixed(2)
      } s)`,
      `drift: ${report.driftedProducts} of ${report.checkedProducts} products (${report.checkedBuckets} day / week buckets)${
        report.drift.length > 0 ? ` e.g. ${JSON.stringify(report.drift.slice(0, 3))}` : ""
      }`
    ]
  }).pipe(Effect.scoped)

/** 2. Freshness: views at a steady rate, each one's apply lag. */
const freshness = (config: BenchConfig) =>
  Effect.gen(function*() {
    const prefix = `${TestKafka.uniqueName("bench-views")}.`
    yield* Topics.layer.pipe(Layer.build, Effect.scoped, withPrefix(prefix))
    yield* startWorkers("views", config).pipe(withPrefix(prefix))
    const catalog = Topic.prefixed(SeedTopics.catalogEvents, prefix)
    const perTick = Math.max(1, Math.round(config.viewRate / 20))
    const ticks = config.viewSeconds * 20
    const start = performance.now()
    for (let tick = 0; tick < ticks; tick++) {
      const wait = start + tick * 50 - performance.now()
      if (wait > 0) yield* Effect.sleep(`${Math.round(wait)} millis`)
      const now = DateTime.unsafeNow()
      yield* Publisher.publish(
        catalog,
        ...Array.from({ length: perTick }, () =>
          new ProductMetricsEvents.ProductViewed({
            eventId: eventId(),
            productId: Ids.ProductId.make(1 + Math.floor(Math.random() * config.products)),
            occurredAt: now
          }))
      )
    }
    const offeredSeconds = (performance.now() - start) / 1000
    yield* waitFor("views", ({ applied }) => applied >= ticks * perTick)
    const lag = yield* Metric.value(Freshness.applyLag.pipe(Metric.tagged("phase", "views")))
    const quantile = (q: number) =>
      Option.getOrElse(Option.flatten(Option.fromNullable(lag.quantiles.find(([at]) => at === q)?.[1])), () => NaN)
    return [
      `views: ${ticks * perTick} offered at ${(ticks * perTick / offeredSeconds).toFixed(0)}/s over ${
        offeredSeconds.toFixed(1)
      } s; apply lag p50 ${quantile(0.5).toFixed(0)} ms, p90 ${quantile(0.9).toFixed(0)} ms, p99 ${
        quantile(0.99).toFixed(0)
      } ms (${lag.count} measured; the summary keeps the last 20,000)`
    ]
  }).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  const config = yield* BenchConfig
  const lines = [...yield* throughput(config), ...yield* freshness(config)]
  process.stdout.write(`\n${lines.join("\n")}\n`)
  if (lines.some((line) => line.startsWith("drift: ") && !line.startsWith("drift: 0 "))) {
    return yield* Effect.dieMessage("drift after the run")
  }
})

program.pipe(
  Effect.provide(
    Layer.mergeAll(
      MetricsStore.Default.pipe(Layer.provideMerge(Database.layerTest(Migrations.all))),
      Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
      AlertSink.layerLog,
      Logger.minimumLogLevel(LogLevel.Info)
    )
  ),
  Effect.runPromise
).then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
