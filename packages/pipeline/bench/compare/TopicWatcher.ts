// When each record reached the topic: the broker's own clock (topics of the comparison are made with
// message.timestamp.type=LogAppendTime, so a record's timestamp is when the broker appended it), read
// by a plain consumer in the bench process. How late that consumer reads does not count, so it
// fetches about once a second (4 MiB or 1 s, whichever first) instead of as soon as anything is
// there: at 1,000 events/s offered its fetches had cost the bench process and the broker ~0.25 of
// the two cores the measured processes share (commit → applied p99 175 and 210 ms → 159 and 95 ms,
// interleaved runs, BENCH_PHASES=kpipe BENCH_RATES=1000 BENCH_EVENTS=50000). For the same reason it
// does not read at all while a backlog drains (`untilOnTopic`): Kafka's ProducerPerformance, the
// limit, runs with no consumer beside it either.
import { Admin, Consumer } from "@kpipe/kafka"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { waitUntil } from "../internal/measure.ts"
import { eventIdOf } from "./Workload.ts"

export interface Watcher {
  /** Epoch ms the broker appended each event id (its first copy). */
  readonly arrivals: ReadonlyMap<string, number>
  /** Records seen, duplicates included. */
  readonly records: () => number
  /**
   * Runs `effect` with the watcher not reading, then reads what arrived meanwhile. `effect` learns
   * how many records are on the topic from the partitions' end offsets (`onTopic`).
   */
  readonly paused: <A, E, R>(effect: (onTopic: OnTopic) => Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** Records appended to the topic since the watcher was paused (duplicates included), from its end offsets. */
export interface OnTopic {
  readonly count: Effect.Effect<number, unknown>
  /** The last count read. */
  readonly last: () => number
  /** Polls the end offsets until `count` records were appended. */
  readonly atLeast: (count: number, what: string) => Effect.Effect<void, unknown>
}

export const watch = (topic: string, partitions: number) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const arrivals = new Map<string, number>()
    let records = 0
    const reading = yield* Effect.makeLatch(true)
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
      (batch) =>
        Effect.zipRight(
          reading.await,
          Effect.suspend(() => {
            for (const record of batch.records) {
              records++
              const id = eventIdOf(record.value)
              if (id !== undefined && !arrivals.has(id)) arrivals.set(id, Number(record.timestamp))
            }
            const last = batch.records.at(-1)
            return last === undefined ? Effect.void : batch.done(last)
          })
        )
    )
    const endOffsets = Effect.map(
      admin.endOffsets(topic),
      (offsets) => offsets.reduce((sum, { high }) => sum + Number(high), 0)
    )
    const paused = <A, E, R>(effect: (onTopic: OnTopic) => Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        reading.close,
        () =>
          Effect.gen(function*() {
            const base = yield* Effect.orDie(endOffsets)
            let last = 0
            const count = Effect.map(endOffsets, (high) => (last = high - base))
            return yield* effect({
              count,
              last: () => last,
              atLeast: (n, what) => waitUntil(Effect.map(count, (seen) => seen >= n), what, 600_000, 10)
            })
          }),
        () => reading.open
      )
    return { arrivals, records: () => records, paused } satisfies Watcher
  })
