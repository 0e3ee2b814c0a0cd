// Scenario 1: the relay's drain rate alone, one run per relay setting (BENCH_RELAY); after the first,
// for comparison, appending alone and consuming alone.
import { BenchReport } from "@kpipe/devtools"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
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
import { appendTxSize, type BenchConfig, type RelayVariant } from "./internal/config.ts"
import type { Context, Stage } from "./internal/context.ts"
import { BenchFailure, type BenchTopic } from "./internal/events.ts"
import { counterValue, measure, printWindow, vacuum, waitUntil } from "./internal/measure.ts"
import type { SpanRecorder } from "./internal/spans.ts"

export const drainRun = (config: BenchConfig, variant: RelayVariant, recorder: SpanRecorder, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = yield* createTopic("bench-drain", config, created)
    const appended = new Set<string>()
    yield* vacuum(config)
    const [, append] = yield* measure(recorder, topic, appendAll(topic, config, appendTxSize.drain, appended))
    const { pending } = yield* OutboxRelay.stats
    if (pending !== config.events) {
      return yield* new BenchFailure({ message: `expected ${config.events} pending outbox rows, found ${pending}` })
    }
    const published0 = yield* counterValue(OutboxRelay.publishedTotal)
    const [, drain] = yield* Effect.scoped(measure(
      recorder,
      topic,
      Effect.gen(function*() {
        yield* OutboxRelay.run({ concurrency: variant.concurrency, batchSize: variant.batchSize })
        yield* waitUntil(
          Effect.map(counterValue(OutboxRelay.publishedTotal), (n) => n - published0 >= config.events),
          "relay drain",
          180_000,
          5
        )
        yield* waitUntil(Effect.map(OutboxRelay.stats, (s) => s.pending === 0), "0 pending", 10_000, 5)
      })
    ))
    return { topic, appended, append, drain }
  })

/** Consumes what a drain run published, with nothing else running. */
export const consumeRun = (
  config: BenchConfig,
  topic: BenchTopic,
  appended: ReadonlySet<string>,
  recorder: SpanRecorder
) =>
  Effect.gen(function*() {
    const group = TestKafka.uniqueName("bench-consume")
    yield* vacuum(config)
    const applied0 = yield* counterValue(IdempotentConsumer.appliedTotal)
    const [joinMs, window] = yield* Effect.scoped(measure(
      recorder,
      topic,
      Effect.gen(function*() {
        const start = performance.now()
        yield* startConsumer(topic, group, config)
        const joinMs = performance.now() - start
        yield* awaitApplied(group, applied0, appended.size, 180_000)
        return joinMs
      })
    ))
    return { joinMs, window, verification: yield* verifyExactlyOnce(group, appended, config) }
  })

export const run = ({ config, created, recorder, traced }: Context) =>
  Effect.gen(function*() {
    yield* BenchReport.print(
      `1. Relay drain rate alone: ${
        BenchReport.fmt(config.events)
      } events appended first (transactions of ${appendTxSize.drain}, ${config.appenders} appenders, relay not running), then the relay started`
    )
    const drains: Array<{ variant: RelayVariant; wallMs: number }> = []
    const stages: Array<Stage> = []
    for (const variant of config.drainVariants) {
      const run = yield* traced(drainRun(config, variant, recorder, created))
      drains.push({ variant, wallMs: run.drain.wallMs })
      stages.push({
        name: `relay alone (concurrency ${variant.concurrency}, batch ${variant.batchSize})`,
        events: config.events,
        wallMs: run.drain.wallMs,
        window: run.drain
      })
      yield* BenchReport.print()
      yield* BenchReport.print(
        `  relay concurrency ${variant.concurrency}, batch ${variant.batchSize}: ${
          BenchReport.fmt(config.events)
        } drained in ${BenchReport.fmt(run.drain.wallMs / 1000, 2)} s = ${
          BenchReport.rate(config.events, run.drain.wallMs)
        }`
      )
      yield* printWindow(run.drain, config.events, 10)
      if (drains.length === 1) {
        yield* BenchReport.print()
        yield* BenchReport.print(
          `  for comparison, appending alone (the pre-fill above): ${
            BenchReport.fmt(run.append.wallMs / 1000, 2)
          } s = ${BenchReport.rate(config.events, run.append.wallMs)}`
        )
        yield* printWindow(run.append, config.events, 8)
        stages.push({
          name: `appending alone (${config.appenders} appenders, transactions of ${appendTxSize.drain})`,
          events: config.events,
          wallMs: run.append.wallMs,
          window: run.append
        })
        const consume = yield* traced(consumeRun(config, run.topic, run.appended, recorder))
        yield* BenchReport.print()
        yield* BenchReport.print(
          `  for comparison, consuming alone (those ${
            BenchReport.fmt(config.events)
          } events, new group, nothing else running): ${BenchReport.fmt(consume.window.wallMs / 1000, 2)} s = ${
            BenchReport.rate(config.events, consume.window.wallMs)
          } (group join included: ${BenchReport.ms(consume.joinMs)})`
        )
        yield* printVerification(consume.verification, config)
        yield* printWindow(consume.window, config.events, 10)
        stages.push({
          name: "consuming alone",
          events: config.events,
          wallMs: consume.window.wallMs,
          window: consume.window
        })
        if (!consume.verification.ok) {
          return yield* new BenchFailure({ message: "consuming alone: events were lost or applied twice" })
        }
      }
    }
    yield* BenchReport.print()
    return { drains, stages }
  })
