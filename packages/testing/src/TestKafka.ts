import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { Consumer } from "@kpipe/kafka"
import type { ConsumerOptions } from "@kpipe/kafka/Consumer"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"

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

/**
 * Reads `topic` from the beginning in a throwaway group until `count` records arrived, then
 * `settle` longer, so that records beyond the expected ones (duplicates) show up too.
 */
export const readTopic = (topic: string, count: number, settle: Duration.DurationInput = "200 millis") =>
  Effect.scoped(Effect.gen(function*() {
    const received = yield* Queue.unbounded<Consumer.ConsumerRecord>()
    yield* Consumer.run(
      { groupId: uniqueName("reader"), topics: [topic], ...fastConsumer },
      (record) => Queue.offer(received, record)
    )
    yield* Queue.size(received).pipe(
      Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (size) => size >= count })
    )
    yield* Effect.sleep(settle)
    return Array.from(yield* Queue.takeAll(received))
  })).pipe(Effect.timeout("30 seconds"))
