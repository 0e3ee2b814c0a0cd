// Scenario 2: sustained outbox → relay → Kafka → idempotent consumer throughput, checked exactly once.
import { BenchReport } from "@kpipe/devtools"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { performance } from "node:perf_hooks"
import { IdempotentConsumer, OutboxRelay } from "../src/index.ts"
import {
  appendAll,
  awaitApplied,
  createTopic,
  printVerification,
  startConsumer,
  verifyExactlyOnce
} from "./internal/blocks.ts"
import { appendTxSize, type BenchConfig, pipelineRelayOptions } from "./internal/config.ts"
import type { Context } from "./internal/context.ts"
import { counterValue, measure, printWindow, vacuum } from "./internal/measure.ts"
import type { SpanRecorder } from "./internal/spans.ts"

interface Sample {
  readonly t: number
  readonly appended: number
  readonly published: number
  readonly applied: number
}

export const pipelineRun = (config: BenchConfig, recorder: SpanRecorder, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = yield* createTopic("bench-e2e", config, created)
    yield* vacuum(config)
    const group = TestKafka.uniqueName("bench-e2e")
    const appended = new Set<string>()
    const timeline: Array<Sample> = []
    const [result, window] = yield* Effect.scoped(Effect.gen(function*() {
      yield* startConsumer(topic, group, config)
      yield* OutboxRelay.run(pipelineRelayOptions(config))
      const published0 = yield* counterValue(OutboxRelay.publishedTotal)
      const applied0 = yield* counterValue(IdempotentConsumer.appliedTotal)
      const duplicates0 = yield* counterValue(IdempotentConsumer.duplicatesTotal)
      return yield* measure(
        recorder,
        topic,
        Effect.gen(function*() {
          const start = performance.now()
          const sample = Effect.gen(function*() {
            timeline.push({
              t: (performance.now() - start) / 1000,
              appended: appended.size,
              published: (yield* counterValue(OutboxRelay.publishedTotal)) - published0,
              applied: (yield* counterValue(IdempotentConsumer.appliedTotal)) - applied0
            })
          })
          const sampler = yield* Effect.fork(Effect.repeat(sample, Schedule.fixed("1 second")))
          const appenders = yield* appendAll(topic, config, appendTxSize.pipeline, appended).pipe(
            Effect.zipRight(Effect.sync(() => performance.now() - start)),
            Effect.fork
          )
          yield* awaitApplied(group, applied0, config.events, 180_000)
          const totalMs = performance.now() - start
          const appendMs = yield* Fiber.join(appenders)
          yield* Fiber.interrupt(sampler)
          yield* sample
          const duplicates = (yield* counterValue(IdempotentConsumer.duplicatesTotal)) - duplicates0
          return { totalMs, appendMs, duplicates }
        })
      )
    }))
    return { ...result, window, timeline, verification: yield* verifyExactlyOnce(group, appended, config) }
  })

export const run = ({ config, created, recorder, traced }: Context) =>
  Effect.gen(function*() {
    yield* BenchReport.print(
      `2. End to end, sustained: ${
        BenchReport.fmt(config.events)
      } events from ${config.appenders} appenders (transactions of ${appendTxSize.pipeline}) while relay (concurrency ${config.pipelineRelay.concurrency}, batch ${config.pipelineRelay.batchSize}${
        Option.match(config.shardsPerClaim, { onNone: () => "", onSome: (n) => `, ${n} shards per claim` })
      }) and consumer run`
    )
    const e2e = yield* traced(pipelineRun(config, recorder, created))
    yield* BenchReport.print(
      `    first append → all ${BenchReport.fmt(config.events)} applied: ${
        BenchReport.fmt(e2e.totalMs / 1000, 2)
      } s = ${BenchReport.rate(config.events, e2e.totalMs)}`
    )
    yield* BenchReport.print(
      `    appending finished after ${BenchReport.fmt(e2e.appendMs / 1000, 2)} s (${
        BenchReport.rate(config.events, e2e.appendMs)
      } offered); duplicates the consumer skipped: ${BenchReport.fmt(e2e.duplicates)}`
    )
    yield* printVerification(e2e.verification, config)
    yield* BenchReport.print(
      "    Progress (published = relay sends acknowledged by Kafka, applied = consumer transactions committed):"
    )
    yield* BenchReport.table(
      ["t s", "appended", "published", "applied", "relay backlog", "consumer backlog"],
      e2e.timeline.map((row) => [
        BenchReport.fmt(row.t, 1),
        BenchReport.fmt(row.appended),
        BenchReport.fmt(row.published),
        BenchReport.fmt(row.applied),
        BenchReport.fmt(row.appended - row.published),
        BenchReport.fmt(row.published - row.applied)
      ]),
      "      "
    )
    yield* printWindow(e2e.window, config.events, 18)
    yield* BenchReport.print()
    return e2e
  })
