import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** The topics order-service produces to and consumes, under `TOPIC_PREFIX`. */
export const resolve = Effect.all({
  orderCreated: ServiceTopics.resolve(SeedTopics.orderCreated),
  inventoryReserved: ServiceTopics.resolve(SeedTopics.inventoryReserved),
  inventoryFailed: ServiceTopics.resolve(SeedTopics.inventoryFailed),
  orderStatus: ServiceTopics.resolve(SeedTopics.orderStatus)
})

export class OrderTopics extends Context.Tag("@kpipe/order-service/Topics")<
  OrderTopics,
  Effect.Effect.Success<typeof resolve>
>() {}

/** The resolved topics, after creating them (and their dead-letter topics) when missing. */
export const layer = Layer.effect(OrderTopics, resolve).pipe(
  Layer.provideMerge(
    ServiceTopics.layerCreate([
      SeedTopics.orderCreated,
      SeedTopics.inventoryReserved,
      SeedTopics.inventoryFailed,
      SeedTopics.orderStatus
    ])
  )
)
