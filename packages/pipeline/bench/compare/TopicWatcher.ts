// When each record reached the topic, as a plain consumer in the bench process sees it: the same
// observer for Kafka's tools, Debezium and the kpipe relay.
import { Consumer } from "@kpipe/kafka"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { eventIdOf } from "./Workload.ts"

export interface Watcher {
  /** Epoch ms each event id was first seen. */
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
        const now = Date.now()
        for (const record of batch.records) {
          records++
          const id = eventIdOf(record.value)
          if (id !== undefined && !arrivals.has(id)) arrivals.set(id, now)
        }
        const last = batch.records.at(-1)
        return last === undefined ? Effect.void : batch.done(last)
      }
    )
    return { arrivals, records: () => records } satisfies Watcher
  })
