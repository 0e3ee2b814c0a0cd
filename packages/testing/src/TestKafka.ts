import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import type { ConsumerOptions } from "@kpipe/kafka/Consumer"
import * as Layer from "effect/Layer"

/** Client, admin and an idempotent producer on the broker named by `KAFKA_BROKERS` (or the local one). */
export const layer = Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(KafkaClient.layerFromEnv))

/** Topic and group names unique to one test, so runs and concurrent tests never share state. */
export const uniqueName = (prefix: string) =>
  `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`

/** Broker minimums instead of production defaults, so joins, rebalances and shutdowns take seconds. */
export const fastConsumer: Pick<
  ConsumerOptions,
  "sessionTimeout" | "rebalanceTimeout" | "heartbeatInterval" | "maxWaitTimeInMs" | "disconnectTimeout"
> = {
  sessionTimeout: 6_000,
  rebalanceTimeout: 10_000,
  heartbeatInterval: 500,
  maxWaitTimeInMs: 100,
  disconnectTimeout: "10 seconds"
}
