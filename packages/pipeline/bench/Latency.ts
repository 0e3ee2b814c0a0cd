// Scenario 3: latency at a fixed offered rate (BENCH_RATE for BENCH_SECONDS), open loop.
import { BenchReport, BenchStats } from "@kpipe/devtools"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import { OutboxRelay } from "../src/index.ts"
import {
  appendTx,
  createTopic,
  printVerification,
  processedCount,
  startConsumer,
  verifyExactlyOnce
} from "./internal/blocks.ts"
import { type BenchConfig, latencyTickMs, pipelineRelayOptions } from "./internal/config.ts"
import type { Context } from "./internal/context.ts"
import { makeEvents } from "./internal/events.ts"
import { measure, printWindow, vacuum, waitUntil } from "./internal/measure.ts"
import { offerOpenLoop } from "./internal/offer.ts"
import type { SpanRecorder } from "./internal/spans.ts"

export const latencyRun = (config: BenchConfig, recorder: SpanRecorder, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = yield* createTopic("bench-latency", config, created)
    yield* vacuum(config)
    const group = TestKafka.uniqueName("bench-latency")
    const perTick = Math.max(1, Math.round((config.rate * latencyTickMs) / 1000))
    const ticks = Math.max(1, Math.round((config.seconds * 1000) / latencyTickMs))
    const total = perTick * ticks
    const appended = new Set<string>()
    const committedAt = new Map<string, number>()
    const producedAt = new Map<string, number>()
    const handledAt = new Map<string, number>()
    const appendTxMs: Array<number> = []
    /** As the issue asks: `Date.now() - appendedAt`, taken in the handler, once per event. */
    const sinceAppend: Array<number> = []

    const [offerMs, window] = yield* Effect.scoped(Effect.gen(function*() {
      yield* startConsumer(topic, group, config, (event, record) => {
        if (handledAt.has(event.eventId)) return
        const now = Date.now()
        handledAt.set(event.eventId, now)
        // kafkajs stamps each record with Date.now() when the relay's send builds the request.
        producedAt.set(event.eventId, Number(record.timestamp))
        sinceAppend.push(now - event.appendedAt)
      })
      yield* OutboxRelay.run(pipelineRelayOptions(config))
      return yield* measure(
        recorder,
        topic,
        Effect.gen(function*() {
          const appendOne = Effect.suspend(() => {
            const events = makeEvents(perTick, config)
            const began = performance.now()
            return appendTx(topic, events).pipe(
              Effect.zipRight(Effect.sync(() => {
                const now = Date.now()
                appendTxMs.push(performance.now() - began)
                for (const event of events) {
                  appended.add(event.eventId)
                  committedAt.set(event.eventId, now)
                }
              }))
            )
          })
          const offerMs = yield* offerOpenLoop(ticks, appendOne)
          yield* waitUntil(Effect.sync(() => handledAt.size >= total), `${total} latency events handled`, 60_000)
          yield* waitUntil(
            Effect.map(processedCount(group), (n) => n >= total),
            `${total} latency events in kpipe_processed_events`,
            10_000
          )
          return offerMs
        })
      )
    }))
    const ids = [...handledAt.keys()]
    return {
      perTick,
      total,
      offerMs,
      window,
      handled: handledAt.size,
      sinceAppend: BenchStats.sortedOf(sinceAppend),
      sinceCommit: BenchStats.sortedOf(ids.map((id) => handledAt.get(id)! - committedAt.get(id)!)),
      commitToProduce: BenchStats.sortedOf(ids.map((id) => producedAt.get(id)! - committedAt.get(id)!)),
      produceToHandle: BenchStats.sortedOf(ids.map((id) => handledAt.get(id)! - producedAt.get(id)!)),
      appendTx: BenchStats.sortedOf(appendTxMs),
      verification: yield* verifyExactlyOnce(group, appended, config)
    }
  })

export const run = ({ config, created, recorder, traced }: Context) =>
  Effect.gen(function*() {
    yield* BenchReport.print(
      `3. Latency at ${BenchReport.fmt(config.rate)} events/s offered for ${config.seconds} s (a transaction of ${
        BenchReport.fmt(config.rate * latencyTickMs / 1000)
      } events every ${latencyTickMs} ms on Schedule.fixed, open loop)`
    )
    const latency = yield* traced(latencyRun(config, recorder, created))
    yield* BenchReport.print(
      `    offered ${BenchReport.fmt(latency.total)} events in ${BenchReport.fmt(latency.offerMs / 1000, 2)} s = ${
        BenchReport.rate(latency.total, latency.offerMs)
      }; arrived at the handler: ${BenchReport.fmt(latency.handled)} of ${BenchReport.fmt(latency.total)}`
    )
    yield* printVerification(latency.verification, config)
    const quantiles = (sorted: Float64Array) => [
      BenchReport.ms(BenchStats.percentile(sorted, 0.5)),
      BenchReport.ms(BenchStats.percentile(sorted, 0.95)),
      BenchReport.ms(BenchStats.percentile(sorted, 0.99)),
      BenchReport.ms(sorted[sorted.length - 1] ?? Number.NaN)
    ]
    yield* BenchReport.table(["end-to-end latency per event", "p50", "p95", "p99", "max"], [
      ["append (payload appendedAt) → handler", ...quantiles(latency.sinceAppend)],
      ["append commit → handler", ...quantiles(latency.sinceCommit)],
      ["  append transaction itself", ...quantiles(latency.appendTx)],
      ["  commit → relay's send (record timestamp)", ...quantiles(latency.commitToProduce)],
      ["  relay's send → handler (Kafka + consumer)", ...quantiles(latency.produceToHandle)]
    ])
    yield* printWindow(latency.window, latency.total, 18)
    yield* BenchReport.print()
    return latency
  })
