import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"

/** The topics metrics-service consumes, and its consumer groups, under `TOPIC_PREFIX`. */
export const resolve = Effect.all({
  catalog: ServiceTopics.resolve(SeedTopics.catalogEvents),
  orders: ServiceTopics.resolve(SeedTopics.orderEvents),
  catalogGroup: ServiceTopics.group("metrics-service-catalog"),
  ordersGroup: ServiceTopics.group("metrics-service-orders"),
  catalogDlqGroup: ServiceTopics.group("metrics-service-catalog-dlq"),
  ordersDlqGroup: ServiceTopics.group("metrics-service-orders-dlq")
})

/** `catalog-events`, `order-events` and their dead-letter topics, created when missing. */
export const layer = ServiceTopics.layerCreate([SeedTopics.catalogEvents, SeedTopics.orderEvents])
