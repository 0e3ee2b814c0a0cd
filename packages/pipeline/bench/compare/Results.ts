// What each system's runs produce, in one shape for the table, the targets and the chart.
import { BenchCpu, BenchReport, BenchStats } from "@kpipe/devtools"
import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import type { Stage } from "./StageSpans.ts"

export interface Percentiles {
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

export const percentiles = (values: Iterable<number>): Percentiles => {
  const sorted = BenchStats.sortedOf(values)
  return {
    p50: BenchStats.percentile(sorted, 0.5),
    p95: BenchStats.percentile(sorted, 0.95),
    p99: BenchStats.percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN
  }
}

/** Per event id: `to` − `from`, for the ids both have. */
export const delays = (from: ReadonlyMap<string, number>, to: ReadonlyMap<string, number>) => {
  const out: Array<number> = []
  for (const [id, at] of from) {
    const end = to.get(id)
    if (end !== undefined) out.push(end - at)
  }
  return out
}

/** p99 of `to` − `from` per second of `from` (by the first `from`): where in a run the tail is. */
export const p99BySecond = (from: ReadonlyMap<string, number>, to: ReadonlyMap<string, number>) => {
  let start = Number.POSITIVE_INFINITY
  for (const at of from.values()) start = Math.min(start, at)
  const seconds: Array<Array<number>> = []
  for (const [id, at] of from) {
    const end = to.get(id)
    if (end !== undefined) (seconds[Math.floor((at - start) / 1000)] ??= []).push(end - at)
  }
  return Array.from(seconds, (delays) => delays === undefined ? Number.NaN : percentiles(delays).p99)
}

export const bySecondText = (p99: NonNullable<LatencyRun["p99BySecond"]>) => {
  const text = (values: ReadonlyArray<number>) => values.map((ms) => BenchReport.fmt(ms)).join(" ")
  return `p99 ms per second of the run: on the topic ${text(p99.toTopic)}${
    p99.toApplied.length === 0 ? "" : `; applied ${text(p99.toApplied)}`
  }`
}

/** The latest of `ids`' times (NaN when one is missing); a loop, as 200,000 arguments would overflow `Math.max`. */
export const lastOf = (ids: ReadonlyArray<string>, at: ReadonlyMap<string, number>) =>
  ids.reduce((max, id) => Math.max(max, at.get(id) ?? Number.NaN), 0)

export interface Drain {
  readonly events: number
  readonly ms: number
  /** CPU ms per 1,000 events, by process. */
  readonly cpuPerThousand: Readonly<Record<string, number>>
  /** Lost or doubled events, when the run checks it. */
  readonly exactlyOnce?: boolean | undefined
}

export const rateOf = (drain: Drain) => drain.events / (drain.ms / 1000)

export interface LatencyRun {
  readonly rate: number
  readonly events: number
  readonly offerMs: number
  /** Append commit (the server's commit timestamp) → the broker appended the record (LogAppendTime). */
  readonly toTopic: Percentiles
  /** Append commit → applied by the consumer (kpipe with its consumer only). */
  readonly toApplied?: Percentiles | undefined
  /** Events that never arrived. */
  readonly missing: number
  /** kpipe only: the relay's and the consumer's costliest spans during the run. */
  readonly stages?: ReadonlyArray<{ readonly process: string; readonly stage: Stage }> | undefined
  /** CPU ms per 1,000 events during the run, by process (as for a drain). */
  readonly cpuPerThousand?: Readonly<Record<string, number>> | undefined
  /** kpipe only: p99 ms per second of the run, commit → on the topic and → applied (empty when no consumer runs). */
  readonly p99BySecond?:
    | { readonly toTopic: ReadonlyArray<number>; readonly toApplied: ReadonlyArray<number> }
    | undefined
  readonly exactlyOnce?: boolean | undefined
}

export interface SystemResult {
  readonly name: string
  /** A short name for the chart. */
  readonly label: string
  /** The backlog drained onto the topic. */
  readonly drain?: Drain | undefined
  /** The backlog drained through the consumer (kpipe only). */
  readonly endToEnd?: Drain | undefined
  readonly latency: ReadonlyArray<LatencyRun>
}

/**
 * CPU over a drain, in ms per 1,000 events: each of `pids` (the system's own processes), this bench
 * process (appender and topic watcher), every PostgreSQL process and every JVM of the machine (the
 * broker, Connect while it runs, and whatever else runs there: other users' count too).
 */
export const cpuMeter = (pids: Readonly<Record<string, number>>) =>
  Effect.map(BenchCpu.snapshot, (snapshot) => {
    const start = performance.now()
    const processes = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, BenchCpu.processMs(pid)]))
    return (events: number) =>
      Effect.map(BenchCpu.since(snapshot), (cpu): Record<string, number> => {
        const perThousand = (cores: number) => (cores * (performance.now() - start) * 1000) / events
        return {
          ...Object.fromEntries(
            Object.entries(pids).map((
              [name, pid]
            ) => [name, ((BenchCpu.processMs(pid) - processes[name]!) * 1000) / events])
          ),
          "bench process": perThousand(cpu.benchUser + cpu.benchSystem),
          "postgres (all)": perThousand(cpu.postgres),
          "JVMs (all: broker, Connect)": perThousand(cpu.kafka)
        }
      })
  })

export const cpuText = (cpu: Readonly<Record<string, number>>) =>
  `CPU ms per 1,000 events: ${
    Object.entries(cpu).map(([name, ms]) => `${name} ${BenchReport.fmt(ms, ms < 10 ? 1 : 0)}`).join(", ")
  }`

export const printCpu = (cpu: Readonly<Record<string, number>>) => BenchReport.print(`    ${cpuText(cpu)}`)
