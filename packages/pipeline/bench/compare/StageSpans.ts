// Where kpipe's time goes at a fixed rate: the relay and consumer processes time each of the library's
// spans and SQL statements (the bench's SpanRecorder, a transaction split into acquire+BEGIN and
// COMMIT) and append them once a second to a file of their own; the bench reads back the seconds of
// a latency run.
import { BenchReport } from "@kpipe/devtools"
import * as Effect from "effect/Effect"
import { appendFileSync, existsSync, readFileSync } from "node:fs"
import { recordingTracer, SpanRecorder } from "../internal/spans.ts"
import { type Percentiles, percentiles } from "./Results.ts"

export const fileVariable = "BENCH_SPANS_FILE"

interface Second {
  readonly at: number
  readonly samples: Record<string, ReadonlyArray<number>>
}

/** In a relay or consumer process: its spans, a line a second, to BENCH_SPANS_FILE when it is set. */
export const recorded = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const file = process.env[fileVariable]
  if (file === undefined || file === "") return self
  const recorder = new SpanRecorder()
  const flush = () => {
    if (recorder.stats.size === 0) return
    const samples = Object.fromEntries(
      [...recorder.stats].map(([name, stat]) => [name, stat.samples.map((ms) => Math.round(ms * 100) / 100)])
    )
    recorder.reset(new Map())
    appendFileSync(file, JSON.stringify({ at: Date.now(), samples } satisfies Second) + "\n")
  }
  return Effect.flatMap(Effect.tracer, (base) =>
    Effect.acquireUseRelease(
      Effect.sync(() => setInterval(flush, 1_000).unref()),
      () => Effect.withTracer(self, recordingTracer(base, recorder)),
      (timer) => Effect.sync(() => clearInterval(timer))
    ))
}

export interface Stage {
  readonly name: string
  readonly count: number
  readonly totalMs: number
  readonly latency: Percentiles
}

// Span names that carry a run's topic (kafkajs's "<topic> process") are one stage whatever the topic.
const normalized = (name: string) => name.replace(/compare-[\w-]+/g, "<topic>")

/** The stages a process recorded between `from` and `to` (epoch ms), the costliest first. */
export const read = (file: string, from: number, to: number): Array<Stage> => {
  if (!existsSync(file)) return []
  const byName = new Map<string, Array<number>>()
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (line === "") continue
    const second = JSON.parse(line) as Second
    // A line holds the second before `at`.
    if (second.at <= from || second.at > to + 1_000) continue
    for (const [name, samples] of Object.entries(second.samples)) {
      const key = normalized(name)
      const all = byName.get(key)
      if (all === undefined) byName.set(key, [...samples])
      else all.push(...samples)
    }
  }
  return [...byName]
    .map(([name, samples]) => ({
      name,
      count: samples.length,
      totalMs: samples.reduce((sum, ms) => sum + ms, 0),
      latency: percentiles(samples)
    }))
    .sort((a, b) => b.totalMs - a.totalMs)
}

export const cells = (process: string, stage: Stage) => [
  process,
  stage.name,
  BenchReport.fmt(stage.count),
  BenchReport.ms(stage.latency.p50),
  BenchReport.ms(stage.latency.p99),
  BenchReport.fmt(stage.totalMs, 0)
]

export const header = ["process", "span (SQL: the statement's start)", "count", "p50", "p99", "total ms"]
