// pnpm bench:compare: the kpipe relay and consumer beside the limit (Kafka's own ProducerPerformance,
// ConsumerPerformance and EndToEndLatency on the same broker) and the peer teams pick instead of a
// relay (Debezium's outbox EventRouter on Kafka Connect), on one workload: a backlog drained, and
// latency at fixed offered rates. Prints the table with the targets and writes it with a
// chart under BENCH_RESULTS_DIR (bench-results/compare). Sizes: BENCH_EVENTS (200,000), BENCH_RATES
// (1000,5000), BENCH_SECONDS (10), BENCH_RECORD_BYTES (250); BENCH_PHASES picks systems. Needs a JDK,
// Maven once (jars into .cache/), Debian's pg_createcluster, the broker on KAFKA_BROKERS.
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport } from "@kpipe/devtools"
import { Admin } from "@kpipe/kafka"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { mkdirSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { runBench } from "../internal/runBench.ts"
import * as Chart from "./Chart.ts"
import * as Debezium from "./Debezium.ts"
import { repoRoot } from "./Jvm.ts"
import * as KafkaTools from "./KafkaTools.ts"
import * as Kpipe from "./Kpipe.ts"
import * as PgCluster from "./PgCluster.ts"
import * as Report from "./Report.ts"
import type { SystemResult } from "./Results.ts"
import { CompareConfig, describe, noteFor } from "./Workload.ts"

const fullSize = (config: CompareConfig) =>
  config.events >= 200_000 && config.seconds >= 10 && config.rates.includes(1_000) && config.rates.includes(5_000)

const program = Effect.gen(function*() {
  const config = yield* CompareConfig
  const created: Array<string> = []
  const admin = yield* Admin.Admin
  yield* Effect.addFinalizer(() =>
    created.length === 0 ? Effect.void : admin.deleteTopics(created).pipe(Effect.ignoreLogged)
  )
  const load = Os.loadavg().map((n) => BenchReport.fmt(n, 2)).join(" ")
  const smoke = !fullSize(config)
  const title = `kpipe vs the limit and the peer${smoke ? " — SMOKE-SIZE RUN, figures not comparable" : ""}`
  yield* BenchReport.print(title)
  const machine = `${Os.availableParallelism()} cores (${Os.cpus()[0]?.model.trim() ?? "?"}), ${
    BenchReport.fmt(Os.totalmem() / 2 ** 30, 1)
  } GiB, node ${process.version}, load average at start ${load}`
  yield* BenchReport.print(`  machine: ${machine}`)
  yield* BenchReport.print(`  workload: ${describe(config)}`)
  yield* BenchReport.print()

  const cluster = yield* PgCluster.make
  const serverInfo = yield* Effect.flatMap(SqlClient, (sql) =>
    sql<{ version: string; synchronousCommit: string }>`
      SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit`)
    .pipe(Effect.provide(Database.layerConfig(Config.succeed(Redacted.make(cluster.url)))))
  yield* BenchReport.print(
    `  PostgreSQL ${
      serverInfo[0]!.version
    } cluster ${cluster.name} of the bench's own on port ${cluster.port} (wal_level=logical, synchronous_commit ${
      serverInfo[0]!.synchronousCommit
    }), for Debezium and kpipe alike`
  )
  const note = noteFor(config.recordBytes)
  yield* BenchReport.print()

  const limit = config.phases.has("limit") ? yield* KafkaTools.run(config, created) : undefined
  const debezium: SystemResult | undefined = config.phases.has("debezium")
    ? yield* Debezium.run(config, cluster, note, created)
    : undefined
  const us = config.phases.has("kpipe") ? yield* Kpipe.run(config, cluster, note, created) : undefined
  const systems = [debezium, us?.relay, us?.endToEnd].filter((s): s is SystemResult => s !== undefined)

  const rows = Report.rows(limit, systems)
  const targets = Report.targets(limit, debezium, us)
  yield* BenchReport.print(
    "Comparison (ratios: throughput to ProducerPerformance unthrottled; latency to ProducerPerformance at the same rate)"
  )
  yield* BenchReport.table(Report.terminalHeader, rows.map(Report.terminalCells), "  ")
  yield* BenchReport.print()
  yield* BenchReport.print("Targets (issue 16)")
  yield* BenchReport.table(["target", "", "measured"], targets.map((t) => [t.name, Report.verdict(t), t.detail]), "  ")

  const dir = Path.resolve(repoRoot, config.resultsDir)
  mkdirSync(dir, { recursive: true })
  writeFileSync(Path.join(dir, "chart.svg"), Chart.svg(title, rows))
  writeFileSync(
    Path.join(dir, "report.md"),
    Report.markdown({
      title,
      setup: [
        `run ${new Date().toISOString()}; machine: ${machine}`,
        `workload: ${describe(config)}`,
        `PostgreSQL ${
          serverInfo[0]!.version
        }, a cluster of the bench's own (wal_level=logical) for both systems; Kafka broker ${
          process.env.KAFKA_BROKERS ?? "127.0.0.1:9092"
        }`,
        `kpipe relay: concurrency ${config.base.pipelineRelay.concurrency}, batch ${config.base.pipelineRelay.batchSize}; consumer batch ${config.base.consumerBatch}, ${config.base.partitionsConsumedConcurrently} partitions at once`,
        `Debezium 3.2.7.Final on Connect standalone 3.9.1, poll.interval.ms ${config.debeziumPollMs}, producer acks=all`
      ],
      rows,
      targets,
      chart: "chart.svg",
      latency: us === undefined ? undefined : [...us.relay.latency, ...us.endToEnd.latency],
      notes: [
        "Latency: from the appending transaction's commit (pg_xact_commit_timestamp, track_commit_timestamp on) to the broker's append time of the record (topics use message.timestamp.type=LogAppendTime), or to the consumer's applied_at (clock_timestamp() in its transaction): one host clock, no bench event loop in between.",
        "Drains: the backlog is appended while the connector is paused / the relay process is frozen (SIGSTOP); the clock starts at resume / SIGCONT and stops at the broker's append time of the last event. The bench's topic reader does not read while a backlog drains (the topics' end offsets tell when it is all there; the append times are read afterwards), as Kafka's ProducerPerformance runs with no consumer beside it. A paused Debezium task still decodes the slot into its queue (max.queue.size 8,192 events), so it resumes with that much read.",
        "kpipe's latency is measured twice at each rate: through the relay alone (its row beside the connector's, which runs with no consumer either) and through relay and consumer, whose processes share the cores with the relay's. Each system's latency runs start after a VACUUM ANALYZE, as autovacuum would between a drain and steady traffic.",
        "CPU per 1,000 events: the systems' own processes exactly (/proc), postgres and JVMs summed over the machine (other users' processes included).",
        "Written by `pnpm bench:compare` (packages/pipeline/bench/compare)."
      ]
    })
  )
  yield* BenchReport.print()
  yield* BenchReport.print(
    `Report: ${Path.relative(process.cwd(), Path.join(dir, "report.md"))}, chart: ${
      Path.relative(process.cwd(), Path.join(dir, "chart.svg"))
    }`
  )
})

runBench(Effect.scoped(program).pipe(Effect.provide(TestKafka.layer)))
