import { KafkaClient } from "@kpipe/kafka"
import { fromCause, KafkaError } from "@kpipe/kafka/KafkaError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/**
 * How far a consumer group has got through a topic. A rebuild of Redis needs it: requests accepted
 * before the loss live only in Kafka until the consumer has applied them.
 */
export class ConsumerProgress extends Effect.Service<ConsumerProgress>()("@kpipe/coupon-service/ConsumerProgress", {
  scoped: Effect.gen(function*() {
    const { kafka } = yield* KafkaClient.KafkaClient
    const admin = yield* Effect.acquireRelease(
      Effect.sync(() => kafka.admin()).pipe(
        Effect.tap((admin) => Effect.tryPromise({ try: () => admin.connect(), catch: fromCause("Connect") }))
      ),
      (admin) =>
        Effect.tryPromise(() => admin.disconnect()).pipe(
          Effect.timeoutOption(Duration.seconds(5)),
          Effect.ignore,
          Effect.interruptible
        )
    )
    const call = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fromCause("Admin") })

    /** The offset after the last record of each partition, right now. */
    const endOffsets = (topic: string) =>
      call(() => admin.fetchTopicOffsets(topic)).pipe(
        Effect.map((partitions) =>
          partitions.map(({ high, low, partition }) => ({ partition, high: BigInt(high), low: BigInt(low) }))
        )
      )

    const committed = (groupId: string, topic: string) =>
      call(() => admin.fetchOffsets({ groupId, topics: [topic] })).pipe(
        Effect.map((topics) =>
          new Map(
            (topics.find((entry) => entry.topic === topic)?.partitions ?? []).map(({ offset, partition }) =>
              [partition, BigInt(offset)] as const
            )
          )
        )
      )

    /**
     * Waits until `groupId` has committed every record that was in `topic` when the wait began,
     * or fails after `timeout`.
     */
    const awaitCaughtUp = (groupId: string, topic: string, timeout: Duration.DurationInput) =>
      Effect.gen(function*() {
        const targets = yield* endOffsets(topic)
        const behind = Effect.map(committed(groupId, topic), (offsets) =>
          targets.filter(({ high, low, partition }) => high > low && (offsets.get(partition) ?? -1n) < high))
        while ((yield* behind).length > 0) {
          yield* Effect.sleep("100 millis")
        }
      }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new KafkaError({
              reason: "Admin",
              retriable: true,
              cause: `consumer group ${groupId} did not catch up with ${topic} in time`
            })
        }),
        Effect.withSpan("ConsumerProgress.awaitCaughtUp", { attributes: { groupId, topic } })
      )

    return { endOffsets, committed, awaitCaughtUp } as const
  })
}) {}
