// The comparison's table (terminal and markdown), the issue's targets marked met / not met, and the
// figures the chart draws: every figure absolute and as a ratio to the limit.
import { BenchReport } from "@kpipe/devtools"
import type { Limit } from "./KafkaTools.ts"
import {
  bySecondText,
  cpuText,
  type Drain,
  type LatencyRun,
  type Percentiles,
  rateOf,
  type SystemResult
} from "./Results.ts"
import * as StageSpans from "./StageSpans.ts"

export interface Row {
  readonly system: string
  /** The system's name in the chart. */
  readonly label: string
  readonly measure: string
  readonly rate?: number | undefined
  readonly rateRatio?: number | undefined
  readonly latency?: Partial<Percentiles> | undefined
  readonly latencyRatio?: Partial<Percentiles> | undefined
}

const keys = ["p50", "p95", "p99", "max"] as const

const ratioOf = (value: number | undefined, limit: number | undefined) =>
  value === undefined || limit === undefined || !(limit > 0) ? undefined : value / limit

const latencyRatio = (latency: Percentiles, limit: Percentiles | undefined) =>
  Object.fromEntries(keys.map((k) => [k, ratioOf(latency[k], limit?.[k])])) as Partial<Percentiles>

export const rows = (limit: Limit | undefined, systems: ReadonlyArray<SystemResult>): Array<Row> => {
  const out: Array<Row> = []
  const drainRow = (system: SystemResult, measure: string, drain: Drain) => {
    const rate = rateOf(drain)
    out.push({
      system: system.name,
      label: system.label,
      measure,
      rate,
      rateRatio: ratioOf(rate, limit?.produceRate)
    })
  }
  if (limit !== undefined) {
    out.push({
      system: "limit",
      label: "limit",
      measure: "ProducerPerformance, unthrottled",
      rate: limit.produceRate,
      rateRatio: 1
    })
    out.push({
      system: "limit",
      label: "limit",
      measure: "ConsumerPerformance",
      rate: limit.consumeRate,
      rateRatio: limit.consumeRate / limit.produceRate
    })
  }
  for (const system of systems) {
    if (system.drain !== undefined) drainRow(system, "backlog drained onto the topic", system.drain)
    if (system.endToEnd !== undefined) drainRow(system, "backlog drained end to end (applied)", system.endToEnd)
  }
  const rates = [
    ...new Set(systems.flatMap((s) => s.latency.map((l) => l.rate)).concat([...(limit?.latency.keys() ?? [])]))
  ]
  for (const rate of rates.sort((a, b) => a - b)) {
    const reference = limit?.latency.get(rate)
    if (reference !== undefined) {
      out.push({
        system: "limit",
        label: "limit",
        measure: `ProducerPerformance at ${BenchReport.fmt(rate)}/s: send → acknowledged`,
        latency: reference,
        latencyRatio: latencyRatio(reference, reference)
      })
    }
    for (const system of systems) {
      const run = system.latency.find((l) => l.rate === rate)
      if (run === undefined) continue
      out.push({
        system: system.name,
        label: system.label,
        measure: `at ${BenchReport.fmt(rate)}/s: commit → on the topic`,
        latency: run.toTopic,
        latencyRatio: latencyRatio(run.toTopic, reference)
      })
      if (run.toApplied !== undefined) {
        out.push({
          system: system.name,
          label: system.label,
          measure: `at ${BenchReport.fmt(rate)}/s: commit → applied`,
          latency: run.toApplied,
          latencyRatio: latencyRatio(run.toApplied, reference)
        })
      }
    }
  }
  if (limit !== undefined) {
    out.push({
      system: "limit",
      label: "limit",
      measure: "EndToEndLatency: produce → consume, one at a time",
      latency: { p50: limit.endToEnd.p50, p99: limit.endToEnd.p99 }
    })
  }
  return out
}

const cellRate = (row: Row) =>
  row.rate === undefined
    ? ""
    : `${BenchReport.fmt(row.rate)}${row.rateRatio === undefined ? "" : ` (×${BenchReport.fmt(row.rateRatio, 2)})`}`
const cellLatency = (row: Row, k: typeof keys[number]) => {
  const value = row.latency?.[k]
  if (value === undefined) return ""
  const ratio = row.latencyRatio?.[k]
  return `${BenchReport.ms(value)}${ratio === undefined ? "" : ` (×${BenchReport.fmt(ratio, ratio < 10 ? 1 : 0)})`}`
}

export const header = ["system", "run", "events/s (× limit)", "p50 (× limit)", "p95", "p99", "max"]
export const cells = (row: Row) => [row.system, row.measure, cellRate(row), ...keys.map((k) => cellLatency(row, k))]

/** The terminal table left-aligns only its first column: system and run in one. */
export const terminalHeader = ["system: run", ...header.slice(2)]
export const terminalCells = (row: Row) => [`${row.system}: ${row.measure}`, ...cells(row).slice(2)]

export interface Target {
  readonly name: string
  readonly met: boolean | undefined
  readonly detail: string
}

export const targets = (
  limit: Limit | undefined,
  debezium: SystemResult | undefined,
  us: { readonly relay: SystemResult; readonly endToEnd: SystemResult } | undefined
) => {
  const at1000 = (system: SystemResult | undefined) => system?.latency.find((l) => l.rate === 1_000)
  // The relay's latency beside the connector's is the relay's alone: no consumer beside either.
  const relayAt1000 = at1000(us?.relay)
  const ours = at1000(us?.endToEnd)
  const theirs = at1000(debezium)
  const relayRate = us?.relay.drain === undefined ? undefined : rateOf(us.relay.drain)
  const e2eRate = us?.endToEnd.endToEnd === undefined ? undefined : rateOf(us.endToEnd.endToEnd)
  const peerRate = debezium?.drain === undefined ? undefined : rateOf(debezium.drain)
  const ms = (n: number | undefined) => (n === undefined ? "n/a" : BenchReport.ms(n))
  const rate = (n: number | undefined) => (n === undefined ? "n/a" : `${BenchReport.fmt(n)} events/s`)
  const list: Array<Target> = [
    {
      name: "end-to-end p99 ≤ 50 ms at 1,000 events/s",
      met: ours?.toApplied === undefined ? undefined : ours.toApplied.p99 <= 50 && ours.exactlyOnce === true,
      detail: `p99 ${ms(ours?.toApplied?.p99)}`
    },
    {
      name: "≥ 10,000 events/s end to end, exactly once",
      met: e2eRate === undefined ? undefined : e2eRate >= 10_000 && us?.endToEnd.endToEnd?.exactlyOnce === true,
      detail: `${rate(e2eRate)}${us?.endToEnd.endToEnd?.exactlyOnce === false ? ", NOT exactly once" : ""}`
    },
    {
      name: "relay drain ≥ 40% of ProducerPerformance",
      met: relayRate === undefined || limit === undefined ? undefined : relayRate >= 0.4 * limit.produceRate,
      detail: relayRate === undefined || limit === undefined
        ? "n/a"
        : `${BenchReport.fmt((relayRate / limit.produceRate) * 100)}% (${rate(relayRate)} of ${
          rate(limit.produceRate)
        })`
    },
    {
      name: "relay ≥ 2× Debezium's throughput",
      met: relayRate === undefined || peerRate === undefined ? undefined : relayRate >= 2 * peerRate,
      detail: relayRate === undefined || peerRate === undefined
        ? "n/a"
        : `×${BenchReport.fmt(relayRate / peerRate, 2)} (${rate(relayRate)} vs ${rate(peerRate)})`
    },
    {
      name: "relay p99 no worse than Debezium's at 1,000 events/s (commit → on the topic)",
      met: relayAt1000 === undefined || theirs === undefined
        ? undefined
        : relayAt1000.toTopic.p99 <= theirs.toTopic.p99,
      detail: `${ms(relayAt1000?.toTopic.p99)} vs ${ms(theirs?.toTopic.p99)} (relay alone; ${
        ms(ours?.toTopic.p99)
      } with the consumer beside it)`
    }
  ]
  return list
}

export const verdict = (target: Target) => target.met === undefined ? "n/a" : target.met ? "MET" : "NOT MET"

const escape = (text: string) => text.replaceAll("|", "\\|")
const mdTable = (head: ReadonlyArray<string>, body: ReadonlyArray<ReadonlyArray<string>>) =>
  [
    `| ${head.map(escape).join(" | ")} |`,
    `| ${head.map((_, i) => (i < 2 ? "---" : "---:")).join(" | ")} |`,
    ...body.map((r) => `| ${r.map(escape).join(" | ")} |`)
  ].join("\n")

export const markdown = (options: {
  readonly title: string
  readonly setup: ReadonlyArray<string>
  readonly rows: ReadonlyArray<Row>
  readonly targets: ReadonlyArray<Target>
  readonly chart: string
  readonly notes: ReadonlyArray<string>
  readonly latency?: ReadonlyArray<LatencyRun> | undefined
}) =>
  [
    `# ${options.title}`,
    "",
    ...options.setup.map((line) => `- ${line}`),
    "",
    mdTable(header, options.rows.map(cells)),
    "",
    "Ratios: throughput to ProducerPerformance unthrottled; latency to ProducerPerformance's send → acknowledged at the same offered rate.",
    "",
    "## Targets (issue 16)",
    "",
    mdTable(["target", "", "measured"], options.targets.map((t) => [t.name, verdict(t), t.detail])),
    "",
    `![latency percentiles and throughput](${options.chart})`,
    "",
    ...(options.latency ?? []).flatMap((run) =>
      run.stages === undefined || run.stages.length === 0 ? [] : [
        `## Where kpipe's time goes at ${BenchReport.fmt(run.rate)} events/s (${
          run.toApplied === undefined ? "relay alone" : "relay and consumer"
        })`,
        "",
        "Each process's costliest spans during the run (a transaction's acquire+BEGIN and COMMIT apart; SQL by the start of its statement).",
        "",
        mdTable(StageSpans.header, run.stages.map(({ process, stage }) => StageSpans.cells(process, stage))),
        "",
        ...(run.cpuPerThousand === undefined ? [] : [`- ${cpuText(run.cpuPerThousand)}`]),
        ...(run.p99BySecond === undefined ? [] : [`- ${bySecondText(run.p99BySecond)}`]),
        ""
      ]
    ),
    ...options.notes.map((line) => `- ${line}`),
    ""
  ].join("\n")
