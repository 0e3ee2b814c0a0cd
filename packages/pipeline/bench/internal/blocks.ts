import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport } from "@kpipe/devtools"
import { Admin, type Consumer } from "@kpipe/kafka"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { DeadLetter, IdempotentConsumer, Outbox, PipelineMigrations, TopicAdmin } from "../../src/index.ts"
import type { BenchConfig } from "./config.ts"
import { type BenchEvent, benchMigrations, type BenchTopic, benchTopic, makeEvents } from "./events.ts"
import { counterValue, waitUntil } from "./measure.ts"

export const KafkaLive = TestKafka.layer
export const BenchLive = Layer.mergeAll(KafkaLive, DeadLetter.layer.pipe(Layer.provide(KafkaLive))).pipe(
  Layer.provideMerge(Database.layerTest([PipelineMigrations.migrations, benchMigrations]))
)

/** Every topic made here is deleted when the run ends. */
export const createTopic = (prefix: string, config: BenchConfig, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = benchTopic(prefix, config.partitions)
    const admin = yield* Admin.Admin
    created.push(...(yield* admin.createTopics(TopicAdmin.specs([topic]))))
    return topic
  })

export const appendTx = (topic: BenchTopic, events: ReadonlyArray<BenchEvent>) =>
  Effect.flatMap(SqlClient, (sql) => sql.withTransaction(Outbox.append(topic, ...events))).pipe(
    Effect.withSpan("bench.append")
  )

/** `total` events in transactions of `txSize`, `concurrency` transactions at a time; `appended` gets their ids. */
export const appendAll = (
  topic: BenchTopic,
  config: BenchConfig,
  txSize: number,
  appended: Set<string>
) =>
  Effect.forEach(
    Array.from({ length: Math.ceil(config.events / txSize) }, (_, i) => Math.min(txSize, config.events - i * txSize)),
    (size) =>
      Effect.suspend(() => {
        const events = makeEvents(size, config)
        return appendTx(topic, events).pipe(
          Effect.zipRight(Effect.sync(() => events.forEach((event) => appended.add(event.eventId))))
        )
      }),
    { concurrency: config.appenders, discard: true }
  )

export type OnApplied = (event: BenchEvent, record: Consumer.ConsumerRecord) => void

export const startConsumer = (topic: BenchTopic, group: string, config: BenchConfig, onApplied: OnApplied = () => {}) =>
  IdempotentConsumer.run({
    topic,
    groupId: group,
    handleBatch: (delivered) =>
      Effect.flatMap(
        SqlClient,
        (sql) =>
          config.handler === "none" ?
            Effect.void :
            sql`INSERT INTO bench_applied ${
              sql.insert(delivered.map(({ event }) => ({
                consumerGroup: group,
                eventId: event.eventId,
                messageKey: event.key,
                appendedAt: event.appendedAt
              })))
            }`.pipe(Effect.asVoid)
      ).pipe(Effect.zipRight(Effect.sync(() => delivered.forEach(({ event, record }) => onApplied(event, record))))),
    errors: { SqlError: "retry" },
    batchSize: config.consumerBatch,
    kafka: {
      ...TestKafka.fastConsumer,
      partitionsConsumedConcurrently: config.partitionsConsumedConcurrently,
      maxWaitTimeInMs: 50
    }
  })

export const processedCount = (group: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_processed_events WHERE consumer_group = ${group}`
  ).pipe(
    Effect.map(([row]) => row!.n)
  )

/** Waits until `count` events are applied: the consumer's own counter first, then the table. */
export const awaitApplied = (group: string, applied0: number, count: number, timeoutMs: number) =>
  Effect.zipRight(
    waitUntil(
      Effect.map(counterValue(IdempotentConsumer.appliedTotal), (n) => n - applied0 >= count),
      `${count} events applied`,
      timeoutMs
    ),
    waitUntil(
      Effect.map(processedCount(group), (n) => n >= count),
      `${count} events in kpipe_processed_events`,
      10_000
    )
  )

/**
 * Every appended event applied exactly once by `group`: the handler's rows are exactly the
 * appended ids (with BENCH_HANDLER=none only the consumer's claims can be checked).
 */
export const verifyExactlyOnce = (group: string, appended: ReadonlySet<string>, config: BenchConfig) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = config.handler === "insert"
      ? yield* sql<{ eventId: string }>`SELECT event_id FROM bench_applied WHERE consumer_group = ${group}`
      : yield* sql<{ eventId: string }>`
          SELECT event_id FROM kpipe_processed_events WHERE consumer_group = ${group} AND outcome = 'APPLIED'`
    const claims = yield* processedCount(group)
    const [dead] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM kpipe_failed_events WHERE consumer_group = ${group}`
    const distinct = new Set(rows.map((row) => row.eventId))
    const missing = [...appended].filter((id) => !distinct.has(id)).length
    const unknown = [...distinct].filter((id) => !appended.has(id)).length
    const result = {
      appended: appended.size,
      rows: rows.length,
      distinct: distinct.size,
      missing,
      doubleApplied: rows.length - distinct.size,
      unknown,
      claims,
      deadLettered: dead!.n
    }
    const ok = result.rows === result.appended && result.distinct === result.appended && missing === 0 &&
      unknown === 0 && claims === result.appended && result.deadLettered === 0
    return { ...result, ok }
  })
export type Verification = Effect.Effect.Success<ReturnType<typeof verifyExactlyOnce>>

export const printVerification = (v: Verification, config: BenchConfig) =>
  BenchReport.print(
    `    exactly once: ${v.ok ? "OK" : "FAILED"}: appended ${BenchReport.fmt(v.appended)}, ${
      config.handler === "insert" ? "handler rows" : "claims (BENCH_HANDLER=none)"
    } ${BenchReport.fmt(v.rows)}, distinct ${BenchReport.fmt(v.distinct)}, missing ${
      BenchReport.fmt(v.missing)
    }, applied twice ${BenchReport.fmt(v.doubleApplied)}, unknown ${
      BenchReport.fmt(v.unknown)
    }, kpipe_processed_events ${BenchReport.fmt(v.claims)}, dead-lettered ${BenchReport.fmt(v.deadLettered)}`
  )
