import { SqlClient } from "@effect/sql/SqlClient"
import { BenchCpu, BenchReport, BenchStats } from "@kpipe/devtools"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"
import type { BenchConfig } from "./config.ts"
import { BenchFailure, type BenchTopic } from "./events.ts"
import type { SpanRecorder, SpanStat } from "./spans.ts"

/** What this database's busy backends are doing: running, waiting on a lock, on WAL, or on the client. */
const sampleActivity = (into: Map<string, number>, samples: { n: number }) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ state: string; wait: string; n: number }>`
      SELECT state, coalesce(wait_event_type || ':' || wait_event, 'running') AS wait, count(*)::int AS n
      FROM pg_stat_activity
      WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
        AND state <> 'idle'
      GROUP BY 1, 2`).pipe(
      Effect.tap((rows) =>
        Effect.sync(() => {
          samples.n++
          for (const row of rows) {
            const key = `${row.state} / ${row.wait}`
            into.set(key, (into.get(key) ?? 0) + row.n)
          }
        })
      ),
      Effect.repeat(Schedule.spaced("100 millis")),
      Effect.ignore,
      Effect.withTracerEnabled(false)
    )

export interface Window {
  readonly wallMs: number
  readonly cpu: BenchCpu.Cpu
  readonly spans: ReadonlyMap<string, SpanStat>
  readonly activity: ReadonlyMap<string, number>
  readonly activitySamples: number
}

/** Runs `effect` and measures it: wall time, CPU, PostgreSQL activity and spans. */
export const measure = <A, E, R>(recorder: SpanRecorder, topic: BenchTopic, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const activity = new Map<string, number>()
    const samples = { n: 0 }
    recorder.reset(new Map([[topic.name, "<topic>"]]))
    const sampler = yield* Effect.fork(sampleActivity(activity, samples))
    const cpu0 = yield* BenchCpu.snapshot
    const start = performance.now()
    const result = yield* effect
    const wallMs = performance.now() - start
    const cpu = yield* BenchCpu.since(cpu0)
    yield* Fiber.interrupt(sampler)
    const window: Window = { wallMs, cpu, spans: recorder.stats, activity, activitySamples: samples.n }
    return [result, window] as const
  })

export const counterValue = (counter: Metric.Metric.Counter<number>) =>
  Effect.map(Metric.value(counter), (state) => state.count)

/** Polls `check` (untraced, so it stays out of the span figures). */
export const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>, what: string, timeoutMs: number, everyMs = 20) =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced(everyMs), until: (holds) => holds }),
    Effect.asVoid,
    Effect.withTracerEnabled(false),
    Effect.timeoutFail({
      duration: timeoutMs,
      onTimeout: () => new BenchFailure({ message: `${what}: not reached within ${timeoutMs / 1000} s` })
    })
  )

/** What autovacuum would have done between two runs (see `BenchConfig.vacuum`). */
export const vacuum = (config: BenchConfig) =>
  config.vacuum
    ? Effect.flatMap(SqlClient, (sql) => sql`VACUUM ANALYZE`).pipe(Effect.asVoid, Effect.withTracerEnabled(false))
    : Effect.void

/** Microseconds of the bench process's CPU per event. */
export const cpuPerEvent = (window: Window, events: number) =>
  ((window.cpu.benchUser + window.cpu.benchSystem) * window.wallMs * 1000) / events

export const otherCpu = (cpu: BenchCpu.Cpu) =>
  Math.max(0, cpu.machine - cpu.benchUser - cpu.benchSystem - cpu.postgres - cpu.kafka)

export const printWindow = (window: Window, events: number, spanLimit: number) =>
  Effect.gen(function*() {
    const { cpu } = window
    const perEvent = cpuPerEvent(window, events)
    yield* BenchReport.print(
      `    CPU, cores of ${Os.availableParallelism()}: machine ${BenchReport.fmt(cpu.machine, 2)} | bench process ${
        BenchReport.fmt(cpu.benchUser + cpu.benchSystem, 2)
      } (user ${BenchReport.fmt(cpu.benchUser, 2)}, kernel ${BenchReport.fmt(cpu.benchSystem, 2)}; event loop ${
        BenchReport.fmt(cpu.eventLoop * 100)
      }% busy; ${BenchReport.fmt(perEvent)} µs per event) | postgres ${
        BenchReport.fmt(cpu.postgres, 2)
      } | kafka broker ${BenchReport.fmt(cpu.kafka, 2)} | other processes ${BenchReport.fmt(otherCpu(cpu), 2)}`
    )
    if (window.activitySamples > 0) {
      const rows = [...window.activity]
        .sort(([, a], [, b]) => b - a)
        .slice(0, 6)
        .map(([state, n]) => [state, BenchReport.fmt(n / window.activitySamples, 2)])
      yield* BenchReport.print(
        `    PostgreSQL backends of the bench database that are not idle (${window.activitySamples} samples of pg_stat_activity):`
      )
      yield* BenchReport.table(["state / wait event", "avg backends"], rows, "      ")
    }
    const spans = [...window.spans]
      .sort(([, a], [, b]) => b.totalMs - a.totalMs)
      .slice(0, spanLimit)
      .map(([name, stat]) => [
        name.length > 74 ? `${name.slice(0, 73)}…` : name,
        BenchReport.fmt(stat.count),
        BenchReport.fmt(stat.totalMs / 1000, 2),
        `${BenchReport.fmt((stat.totalMs / window.wallMs) * 100)}%`,
        BenchReport.fmt(stat.totalMs / stat.count, 2),
        BenchReport.fmt(BenchStats.percentile(BenchStats.sortedOf(stat.samples), 0.99), 1),
        stat.items > 0 ? BenchReport.fmt(stat.items / stat.count) : ""
      ])
    yield* BenchReport.print(
      "    Time in spans (summed over concurrent fibers; busy% = total / wall time, can exceed 100%):"
    )
    yield* BenchReport.table(["span", "calls", "total s", "busy%", "mean ms", "p99 ms", "items/call"], spans, "      ")
  })
