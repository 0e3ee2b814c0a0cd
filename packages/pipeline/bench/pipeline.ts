// End-to-end benchmark of the pipeline against the real broker and PostgreSQL on this machine:
//   1. relay drain rate alone (and, for comparison, appending alone and consuming alone),
//   2. sustained outbox → relay → Kafka → idempotent consumer throughput, checked exactly once,
//   3. latency at a fixed offered rate.
// Each run also reports where the time went: CPU per process, what PostgreSQL's backends were
// doing (pg_stat_activity samples) and the time spent in each of the library's spans and SQL
// statements (a tracer that times them).
// One file per scenario (RelayDrain.ts, Throughput.ts, Latency.ts); this entry runs them in turn
// and sums up. Usage: pnpm bench. Sizes: BENCH_EVENTS, BENCH_RATE, BENCH_SECONDS; more knobs in `BenchConfig`.
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport, BenchStats } from "@kpipe/devtools"
import { Admin } from "@kpipe/kafka"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Os from "node:os"
import { BenchLive } from "./internal/blocks.ts"
import { BenchConfig } from "./internal/config.ts"
import type { Context } from "./internal/context.ts"
import { BenchFailure } from "./internal/events.ts"
import { cpuPerEvent, otherCpu, type Window } from "./internal/measure.ts"
import { runBench } from "./internal/runBench.ts"
import { recordingTracer, SpanRecorder } from "./internal/spans.ts"
import * as Latency from "./Latency.ts"
import * as RelayDrain from "./RelayDrain.ts"
import * as Throughput from "./Throughput.ts"

const program = Effect.gen(function*() {
  const config = yield* BenchConfig
  const sql = yield* SqlClient
  const admin = yield* Admin.Admin
  const recorder = new SpanRecorder()
  const created: Array<string> = []
  yield* Effect.addFinalizer(() =>
    created.length === 0 ? Effect.void : admin.deleteTopics(created).pipe(Effect.ignoreLogged)
  )
  const traced = Effect.withTracer(recordingTracer(yield* Effect.tracer, recorder))
  const context: Context = { config, recorder, created, traced }
  const poolSize = yield* Config.integer("PG_MAX_CONNECTIONS")

  const [server] = yield* sql<{ version: string; synchronousCommit: string; autovacuum: string }>`
    SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit,
           current_setting('autovacuum') AS autovacuum`
  const cluster = yield* admin.describeCluster
  yield* BenchReport.print("kpipe pipeline benchmark")
  yield* BenchReport.print(
    `  machine: ${Os.availableParallelism()} cores (${Os.cpus()[0]?.model.trim() ?? "?"}), ${
      BenchReport.fmt(Os.totalmem() / 2 ** 30, 1)
    } GiB, node ${process.version}; PostgreSQL ${server!.version.split(" ")[0]} (synchronous_commit ${
      server!.synchronousCommit
    }, autovacuum ${server!.autovacuum}); Kafka: ${cluster.brokers.length} broker at ${
      cluster.brokers.map((b) => `${b.host}:${b.port}`).join(",")
    }; load average at start ${Os.loadavg().map((n) => BenchReport.fmt(n, 2)).join(" ")}`
  )
  yield* BenchReport.print(
    `  events ${BenchReport.fmt(config.events)} | appenders ${config.appenders} | keys ${
      BenchReport.fmt(config.keys)
    } (${config.keysPerTransaction} per transaction) | partitions ${config.partitions} | pool ${poolSize} connections | consumer: batch ${config.consumerBatch}, ${config.partitionsConsumedConcurrently} partitions at once, handler ${
      config.handler === "insert"
        ? "inserts each transaction's events with one statement (handleBatch)"
        : "writes nothing (BENCH_HANDLER=none)"
    }`
  )
  yield* BenchReport.print(
    config.vacuum
      ? `  VACUUM ANALYZE of the bench database before each run, as autovacuum would do between runs (BENCH_VACUUM=false: never)`
      : `  no VACUUM between runs (BENCH_VACUUM=false): dead outbox rows of earlier runs stay in the relay's index`
  )
  yield* BenchReport.print()

  const { drains, stages } = yield* RelayDrain.run(context)
  const e2e = yield* Throughput.run(context)
  const latency = yield* Latency.run(context)

  // Summary
  stages.push({ name: "end to end (run 2)", events: config.events, wallMs: e2e.totalMs, window: e2e.window })
  stages.push({
    name: `latency run (${BenchReport.fmt(config.rate)} events/s offered)`,
    events: latency.total,
    wallMs: latency.offerMs,
    window: latency.window
  })
  const perEvent = (window: Window, events: number, cores: number) => (cores * window.wallMs * 1000) / events
  yield* BenchReport.print(
    "Summary: rate of each stage, and CPU per event (µs) of the bench process (one Node event loop), PostgreSQL and Kafka"
  )
  yield* BenchReport.table(
    ["stage", "events/s", "event loop busy", "bench µs", "postgres µs", "kafka µs", "other processes, cores"],
    stages.map(({ events, name, wallMs, window }) => [
      name,
      BenchReport.fmt(events / (wallMs / 1000)),
      `${BenchReport.fmt(window.cpu.eventLoop * 100)}%`,
      BenchReport.fmt(cpuPerEvent(window, events)),
      BenchReport.fmt(perEvent(window, events, window.cpu.postgres)),
      BenchReport.fmt(perEvent(window, events, window.cpu.kafka)),
      BenchReport.fmt(otherCpu(window.cpu), 2)
    ]),
    "  "
  )
  const e2eCpu = cpuPerEvent(e2e.window, config.events) + perEvent(e2e.window, config.events, e2e.window.cpu.postgres) +
    perEvent(e2e.window, config.events, e2e.window.cpu.kafka)
  yield* BenchReport.print(
    `  End to end costs ${
      BenchReport.fmt(e2eCpu)
    } µs of CPU per event; all ${Os.availableParallelism()} cores doing nothing else would give at most ${
      BenchReport.fmt((Os.availableParallelism() * 1e6) / e2eCpu)
    } events/s, and one event loop at 100% at most ${
      BenchReport.fmt(1e6 / cpuPerEvent(e2e.window, config.events))
    } events/s.`
  )
  yield* BenchReport.print(
    "  (postgres counts every backend on the server, so also other users' while they run; processes that end during a run are missed)"
  )
  yield* BenchReport.print()

  // Targets
  const e2eRate = config.events / (e2e.totalMs / 1000)
  const best = drains.reduce((a, b) => (b.wallMs < a.wallMs ? b : a))
  const throughputMet = e2eRate >= 5_000 && e2e.verification.ok
  const p99 = BenchStats.percentile(latency.sinceAppend, 0.99)
  const latencyMet = p99 <= 100 && latency.verification.ok && config.rate >= 1_000
  yield* BenchReport.print("Targets")
  yield* BenchReport.print(
    `  relay drain alone: best ${
      BenchReport.rate(config.events, best.wallMs)
    } (concurrency ${best.variant.concurrency}, batch ${best.variant.batchSize})`
  )
  yield* BenchReport.print(
    `  ≥ 5,000 events/s end to end with zero loss and zero double-apply: ${throughputMet ? "MET" : "NOT MET"} (${
      BenchReport.fmt(e2eRate)
    } events/s, ${e2e.verification.ok ? "exactly once" : "NOT exactly once"})`
  )
  yield* BenchReport.print(
    `  p99 ≤ 100 ms at 1,000 events/s: ${latencyMet ? "MET" : "NOT MET"} (p99 ${BenchReport.ms(p99)} at ${
      BenchReport.fmt(config.rate)
    } events/s offered${latency.verification.ok ? "" : ", events lost or applied twice"})`
  )

  if (!e2e.verification.ok || !latency.verification.ok) {
    return yield* new BenchFailure({ message: "events were lost or applied twice (see above)" })
  }
  if (config.strict && !(throughputMet && latencyMet)) {
    return yield* new BenchFailure({ message: "a target was missed and BENCH_STRICT is set" })
  }
})

runBench(Effect.scoped(program).pipe(Effect.provide(BenchLive)))
