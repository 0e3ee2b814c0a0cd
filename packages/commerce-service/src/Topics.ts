import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"

/** The topics commerce-service produces to, under `TOPIC_PREFIX`. */
export const resolve = Effect.all({
  catalog: ServiceTopics.resolve(SeedTopics.catalogEvents),
  orders: ServiceTopics.resolve(SeedTopics.orderEvents)
})

/** `catalog-events` and `order-events` (and their dead-letter topics), created when missing. */
export const layer = ServiceTopics.layerCreate([SeedTopics.catalogEvents, SeedTopics.orderEvents])
