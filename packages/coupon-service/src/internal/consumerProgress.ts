import { SqlClient } from "@effect/sql/SqlClient"
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

/** The partitions of `targets` holding records below their target that `groupId` has not committed yet. */
export const uncommitted = (groupId: string, topic: string, targets: EndOffsets) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(groupId, topic)).pipe(
    Effect.map((partitions) => {
      const offsets = new Map(partitions.map(({ offset, partition }) => [partition, BigInt(offset)] as const))
      return targets.filter(({ high, low, partition }) => high > low && (offsets.get(partition) ?? -1n) < high)
    })
  )

/** How many partitions hold records below `targets` that `groupId` has not committed yet. */
export const partitionsBehind = (groupId: string, topic: string, targets: EndOffsets) =>
  Effect.map(uncommitted(groupId, topic, targets), (partitions) => partitions.length)

/**
 * Of `targets`, the partitions whose last record below the target `groupId` has claimed in the
 * database (`kpipe_processed_events`, the IdempotentConsumer's claims, which carry the offset of
 * the record): a partition's records are applied in offset order, so everything before it is
 * applied too, committed offset or not. A last record that was a duplicate of an earlier event (the
 * claim keeps the first offset) or could not be decoded is not found: the caller waits for the commit.
 */
export const claimedUpTo = (groupId: string, topic: string, targets: EndOffsets) =>
  Effect.gen(function*() {
    if (targets.length === 0) return new Set<number>()
    const sql = yield* SqlClient
    const rows = yield* sql<{ partition: number }>`
      SELECT t.partition FROM unnest(
        ${targets.map(({ partition }) => partition)}::int[],
        ${targets.map(({ high }) => String(high - 1n))}::bigint[]
      ) AS t(partition, last_offset)
      WHERE EXISTS (
        SELECT 1 FROM kpipe_processed_events p
        WHERE p.consumer_group = ${groupId} AND p.topic = ${topic}
          AND p.partition = t.partition AND p."offset" >= t.last_offset
      )`
    return new Set(rows.map((row) => row.partition))
  })

/**
 * Waits until `groupId` has applied every record that was in `topic` when the wait began, or fails
 * after `timeout`. A rebuild of Redis needs it: requests accepted before the loss live only in Kafka
 * until the consumer has applied them. Applied means committed (the group's offsets, polled every
 * 100 ms) or, for a partition still behind after that, claimed in the database (`claimedUpTo`,
 * every second): a member whose last offset commit failed commits again only with its next batch
 * or after a rebalance, and a closed coupon brings no next batch.
 */
export const awaitCaughtUp = (groupId: string, topic: string, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const targets = yield* endOffsets(topic)
    const applied = new Set<number>()
    let polls = 0
    yield* Effect.gen(function*() {
      const behind = (yield* uncommitted(groupId, topic, targets)).filter(({ partition }) => !applied.has(partition))
      if (behind.length > 0 && ++polls % 10 === 0) {
        for (const partition of yield* claimedUpTo(groupId, topic, behind)) applied.add(partition)
        return behind.filter(({ partition }) => !applied.has(partition)).length
      }
      return behind.length
    }).pipe(Effect.repeat({ until: (partitions) => partitions === 0, schedule: Schedule.spaced("100 millis") }))
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
