// When each record reached the topic: the broker's own clock (topics of the comparison are made with
// message.timestamp.type=LogAppendTime, so a record's timestamp is when the broker appended it), read
// by a plain consumer in the bench process. How late that consumer reads does not count.
import { Consumer } from "@kpipe/kafka"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { eventIdOf } from "./Workload.ts"

export interface Watcher {
  /** Epoch ms the broker appended each event id (its first copy). */
  readonly arrivals: ReadonlyMap<string, number>
  /** Records seen, duplicates included. */
  readonly records: () => number
}

export const watch = (topic: string, partitions: number) =>
  Effect.gen(function*() {
    const arrivals = new Map<string, number>()
    let records = 0
    yield* Consumer.runBatches(
      {
        ...TestKafka.fastConsumer,
        groupId: TestKafka.uniqueName("compare-watch"),
        topics: [topic],
        fromBeginning: true,
        maxWaitTimeInMs: 10,
        partitionsConsumedConcurrently: partitions
      },
      (batch) => {
        for (const record of batch.records) {
          records++
          const id = eventIdOf(record.value)
          if (id !== undefined && !arrivals.has(id)) arrivals.set(id, Number(record.timestamp))
        }
        const last = batch.records.at(-1)
        return last === undefined ? Effect.void : batch.done(last)
      }
    )
    return { arrivals, records: () => records } satisfies Watcher
  })
