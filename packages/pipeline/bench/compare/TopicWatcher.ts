// When each record reached the topic: the broker's own clock (topics of the comparison are made with
// message.timestamp.type=LogAppendTime, so a record's timestamp is when the broker appended it), read
// by a plain consumer in the bench process. How late that consumer reads does not count, so it
// fetches about once a second (4 MiB or 1 s, whichever first) instead of as soon as anything is
// there: at 1,000 events/s offered its fetches had cost the bench process and the broker ~0.25 of
// the two cores the measured processes share (commit → applied p99 175 and 210 ms → 159 and 95 ms,
// interleaved runs, BENCH_PHASES=kpipe BENCH_RATES=1000 BENCH_EVENTS=50000).
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
        maxWaitTimeInMs: 1_000,
        minBytes: 4 * 1024 * 1024,
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
