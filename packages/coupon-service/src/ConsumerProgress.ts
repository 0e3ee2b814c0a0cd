import { Admin } from "@kpipe/kafka"
import { KafkaError } from "@kpipe/kafka/KafkaError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/**
 * How far a consumer group has got through a topic. A rebuild of Redis needs it: requests accepted
 * before the loss live only in Kafka until the consumer has applied them.
 */
export class ConsumerProgress extends Effect.Service<ConsumerProgress>()("@kpipe/coupon-service/ConsumerProgress", {
  effect: Effect.gen(function*() {
    const admin = yield* Admin.Admin

    /** The offset after the last record of each partition, right now. */
    const endOffsets = (topic: string) =>
      Effect.map(
        admin.endOffsets(topic),
        (partitions) =>
          partitions.map(({ high, low, partition }) => ({ partition, high: BigInt(high), low: BigInt(low) }))
      )

    const committed = (groupId: string, topic: string) =>
      Effect.map(
        admin.committedOffsets(groupId, topic),
        (partitions) => new Map(partitions.map(({ offset, partition }) => [partition, BigInt(offset)] as const))
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
