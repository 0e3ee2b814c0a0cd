import { Admin } from "@kpipe/kafka"
import { KafkaError } from "@kpipe/kafka/KafkaError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/**
 * Waits until `groupId` has committed every record that was in `topic` when the wait began (polled
 * every 100 ms), or fails after `timeout`. A rebuild of Redis needs it: requests accepted before the
 * loss live only in Kafka until the consumer has applied them.
 */
export const awaitCaughtUp = (groupId: string, topic: string, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const targets = (yield* admin.endOffsets(topic)).map(({ high, low, partition }) => ({
      partition,
      high: BigInt(high),
      low: BigInt(low)
    }))
    const behind = Effect.map(admin.committedOffsets(groupId, topic), (partitions) => {
      const offsets = new Map(partitions.map(({ offset, partition }) => [partition, BigInt(offset)] as const))
      return targets.filter(({ high, low, partition }) => high > low && (offsets.get(partition) ?? -1n) < high).length
    })
    yield* behind.pipe(
      Effect.repeat({ until: (partitions) => partitions === 0, schedule: Schedule.spaced("100 millis") })
    )
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
