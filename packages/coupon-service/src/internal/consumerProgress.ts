import { Admin } from "@kpipe/kafka"
import { KafkaError } from "@kpipe/kafka/KafkaError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** A topic's partitions as they were at one moment: `high` is the offset after the last record. */
export type EndOffsets = ReadonlyArray<{ readonly partition: number; readonly low: bigint; readonly high: bigint }>

/** Each partition's end offsets now. */
export const endOffsets = (topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.endOffsets(topic)).pipe(
    Effect.map((partitions): EndOffsets =>
      partitions.map(({ high, low, partition }) => ({ partition, high: BigInt(high), low: BigInt(low) }))
    )
  )

/** How many partitions hold records below `targets` that `groupId` has not committed yet. */
export const partitionsBehind = (groupId: string, topic: string, targets: EndOffsets) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(groupId, topic)).pipe(
    Effect.map((partitions) => {
      const offsets = new Map(partitions.map(({ offset, partition }) => [partition, BigInt(offset)] as const))
      return targets.filter(({ high, low, partition }) => high > low && (offsets.get(partition) ?? -1n) < high).length
    })
  )

/**
 * Waits until `groupId` has committed every record that was in `topic` when the wait began (polled
 * every 100 ms), or fails after `timeout`. A rebuild of Redis needs it: requests accepted before the
 * loss live only in Kafka until the consumer has applied them.
 */
export const awaitCaughtUp = (groupId: string, topic: string, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const targets = yield* endOffsets(topic)
    yield* partitionsBehind(groupId, topic, targets).pipe(
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
