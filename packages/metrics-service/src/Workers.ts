import type { Topic } from "@kpipe/pipeline"
import { DeadLetter, DeadLetterMonitor, IdempotentConsumer } from "@kpipe/pipeline"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config, retryPolicy } from "./Config.ts"
import * as Freshness from "./Freshness.ts"
import { MetricsStore } from "./MetricsStore.ts"
import * as Topics from "./Topics.ts"

/** The options of the two batch consumers, as `layer` runs them. */
export const consumerOptions = Effect.gen(function*() {
  const config = yield* Config
  const topics = yield* Topics.resolve
  const store = yield* MetricsStore
  const freshness = yield* Freshness.Freshness
  const common = {
    errors: { SqlError: "retry" } as const,
    retry: retryPolicy(config.maxRetries),
    batchSize: config.batchSize,
    kafka: {
      ...config.kafka,
      maxBytesPerPartition: config.fetchBytesPerPartition,
      partitionsConsumedConcurrently: config.partitionsConcurrency
    }
  }
  const catalog = IdempotentConsumer.options({
    ...common,
    topic: topics.catalog,
    groupId: topics.catalogGroup,
    afterCommit: freshness.applied(topics.catalog.name),
    handleBatch: (delivered) =>
      store.applyCatalog(delivered.map(({ event }) => event)).pipe(
        Effect.zipRight(store.recordNewest(topics.catalog.name, delivered))
      )
  })
  const orders = IdempotentConsumer.options({
    ...common,
    topic: topics.orders,
    groupId: topics.ordersGroup,
    afterCommit: freshness.applied(topics.orders.name),
    handleBatch: (delivered) =>
      store.applyOrders(delivered.map(({ event }) => event)).pipe(
        Effect.zipRight(store.recordNewest(topics.orders.name, delivered))
      )
  })
  return { catalog, orders }
})

/**
 * What runs in the background: one batch consumer per topic (each transaction: the claims of its
 * records, then one statement for all new events), a dead-letter monitor per dead-letter topic
 * (`catalog-events-dlq`, `order-events-dlq`) and the freshness gauge.
 */
export const layer = Layer.unwrapEffect(Effect.gen(function*() {
  const config = yield* Config
  const topics = yield* Topics.resolve
  const { catalog, orders } = yield* consumerOptions
  const monitor = (topic: Topic.Any, groupId: string) =>
    DeadLetterMonitor.layer({ topic, groupId, kafka: config.kafka })
  return Layer.mergeAll(
    Layer.merge(IdempotentConsumer.layer(catalog), IdempotentConsumer.layer(orders)).pipe(
      Layer.provide(DeadLetter.layer)
    ),
    monitor(topics.catalog, topics.catalogDlqGroup),
    monitor(topics.orders, topics.ordersDlqGroup),
    Freshness.layerReporter
  )
}))
