// Us: the kpipe relay (OutboxRelay's layer) and the idempotent consumer, each in a process of its
// own as a deployment runs them, on the same workload and server as the peer. The relay is "paused"
// like the connector: frozen (SIGSTOP) while the backlog is appended, thawed to drain it.
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport, ServiceProcess } from "@kpipe/devtools"
import { Admin } from "@kpipe/kafka"
import { Outbox, PipelineMigrations, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { mkdtempSync, rmSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { printVerification, processedCount, verifyExactlyOnce } from "../internal/blocks.ts"
import { BenchFailure, benchMigrations, type BenchTopic, benchTopic } from "../internal/events.ts"
import { vacuum, waitUntil } from "../internal/measure.ts"
import * as PgCluster from "./PgCluster.ts"
import * as Progress from "./Progress.ts"
import {
  bySecondText,
  cpuMeter,
  delays,
  type Drain,
  lastOf,
  type LatencyRun,
  p99BySecond,
  percentiles,
  printCpu,
  type SystemResult
} from "./Results.ts"
import * as StageSpans from "./StageSpans.ts"
import * as TopicWatcher from "./TopicWatcher.ts"
import { appendBacklog, type CompareConfig, makeWorkloadEvents, offerAtRate, topicConfig } from "./Workload.ts"

const database = "compare_kpipe"
const relayEntry = fileURLToPath(new URL("relayMain.ts", import.meta.url))
const consumerEntry = fileURLToPath(new URL("consumerMain.ts", import.meta.url))

/** When each event was applied (the consumer's transaction stamps `applied_at`), by id. */
const appliedAt = (group: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ eventId: string; at: number }>`
      SELECT event_id, (extract(epoch FROM applied_at) * 1000)::float8 AS at
      FROM bench_applied WHERE consumer_group = ${group}`).pipe(
      Effect.map((rows) => new Map(rows.map((row) => [row.eventId, row.at])))
    )

const makeTopic = (config: CompareConfig, prefix: string, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = benchTopic(prefix, config.base.partitions)
    const specs = TopicAdmin.specs([topic]).map((spec) => ({ ...spec, config: { ...spec.config, ...topicConfig } }))
    created.push(...(yield* (yield* Admin.Admin).createTopics(specs)))
    return topic
  })

const run_ = (config: CompareConfig, url: string, note: string, created: Array<string>) =>
  Effect.gen(function*() {
    const spansDir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(Path.join(Os.tmpdir(), "kpipe-compare-spans-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const spansOf = { relay: Path.join(spansDir, "relay.jsonl"), consumer: Path.join(spansDir, "consumer.jsonl") }
    const env = {
      [StageSpans.fileVariable]: spansOf.relay,
      DATABASE_URL: url,
      OUTBOX_CONCURRENCY: String(config.base.pipelineRelay.concurrency),
      OUTBOX_BATCH_SIZE: String(config.base.pipelineRelay.batchSize),
      OUTBOX_RETENTION: config.relayRetention,
      PG_APPLICATION_NAME: "kpipe-compare"
    }
    const relay = yield* Progress.during(
      "kpipe: starting the relay process",
      () => "waiting for it",
      ServiceProcess.start({ name: "compare-relay", entry: relayEntry, env, execArgv: config.processArgs })
    )

    /** The first event through: the relay's producer knows the topic (and the consumer has joined). */
    const prime = (topic: BenchTopic, watcher: TopicWatcher.Watcher, ids: Array<string>) =>
      Effect.gen(function*() {
        const primer = makeWorkloadEvents(1, config, note)
        yield* Outbox.append(topic, ...primer)
        ids.push(primer[0]!.eventId)
        yield* waitUntil(Effect.sync(() => watcher.arrivals.has(primer[0]!.eventId)), "kpipe's first event", 60_000)
      })

    /**
     * Freezes the relay, appends the backlog, thaws it and waits for `done` with the watcher paused:
     * the drain starts at the thaw. Then waits until the watcher has read the whole backlog.
     */
    const drainBacklog = (
      watcher: TopicWatcher.Watcher,
      topic: BenchTopic,
      label: string,
      pids: Record<string, number>,
      status: (onTopic: TopicWatcher.OnTopic) => string,
      done: (onTopic: TopicWatcher.OnTopic) => Effect.Effect<void, unknown, SqlClient>,
      ids: Array<string>
    ) =>
      Effect.gen(function*() {
        yield* relay.signal("SIGSTOP")
        const appended: Array<string> = []
        yield* Progress.during(
          `kpipe: appending a backlog of ${BenchReport.fmt(config.events)} events (relay frozen)`,
          () => `${BenchReport.fmt(appended.length)} appended`,
          appendBacklog(config, note, (events) => Outbox.append(topic, ...events), appended)
        ).pipe(Effect.onError(() => relay.signal("SIGCONT")))
        // Not push(...appended): 200,000 arguments overflow the stack.
        for (const id of appended) ids.push(id)
        const seen = watcher.arrivals.size
        const { cpu, t0 } = yield* watcher.paused((onTopic) =>
          Effect.gen(function*() {
            const meter = yield* cpuMeter(pids)
            const t0 = Date.now()
            yield* relay.signal("SIGCONT")
            yield* Progress.during(label, () => status(onTopic), done(onTopic))
            return { t0, cpu: yield* meter(config.events) }
          })
        )
        yield* Progress.during(
          "reading the backlog's append times",
          () => `${BenchReport.fmt(watcher.arrivals.size - seen)} of ${BenchReport.fmt(config.events)}`,
          waitUntil(Effect.sync(() => watcher.arrivals.size - seen >= config.events), `${label}: read back`, 600_000)
        )
        return { appended, t0, cpu }
      })

    /**
     * One run per offered rate onto `topic`: commit → on the topic, and → applied by `group` when
     * a consumer runs.
     */
    const latencyRuns = (
      label: string,
      topic: BenchTopic,
      watcher: TopicWatcher.Watcher,
      processes: ReadonlyArray<{ readonly name: keyof typeof spansOf; readonly pid: number }>,
      group: Option.Option<string>,
      ids: Array<string>
    ) =>
      Effect.gen(function*() {
        const applied = Option.map(group, (g) => Effect.withTracerEnabled(processedCount(g), false))
        const runs: Array<LatencyRun> = []
        for (const rate of config.rates) {
          const seen = watcher.arrivals.size
          const applied0 = Option.isSome(applied) ? yield* applied.value : 0
          const meter = yield* cpuMeter(Object.fromEntries(processes.map(({ name, pid }) => [name, pid])))
          const from = Date.now()
          const offered = yield* Progress.during(
            `kpipe (${label}) at ${BenchReport.fmt(rate)} events/s for ${config.seconds} s`,
            () => `${BenchReport.fmt(watcher.arrivals.size - seen)} on the topic`,
            offerAtRate(config, rate, note, (events) => Outbox.append(topic, ...events)).pipe(
              Effect.tap(({ total }) =>
                Effect.zipRight(
                  waitUntil(
                    Effect.sync(() => watcher.arrivals.size - seen >= total),
                    `kpipe (${label}): all events at ${rate}/s`,
                    60_000,
                    50
                  ),
                  Option.match(applied, {
                    onNone: () => Effect.void,
                    onSome: (count) =>
                      waitUntil(
                        Effect.map(count, (n) => n - applied0 >= total),
                        `kpipe (${label}): all applied at ${rate}/s`,
                        60_000,
                        100
                      )
                  })
                )
              )
            )
          )
          const to = Date.now()
          const cpu = yield* meter(offered.total)
          for (const id of offered.committedAt.keys()) ids.push(id)
          const toTopic = delays(offered.committedAt, watcher.arrivals)
          const appliedTimes = Option.isSome(group) ? Option.some(yield* appliedAt(group.value)) : Option.none()
          const stages = processes.flatMap(({ name }) =>
            StageSpans.read(spansOf[name], from, to).slice(0, 8).map((stage) => ({ process: name, stage }))
          )
          const bySecond = {
            toTopic: p99BySecond(offered.committedAt, watcher.arrivals),
            toApplied: Option.match(appliedTimes, {
              onNone: () => [],
              onSome: (times) => p99BySecond(offered.committedAt, times)
            })
          }
          const result: LatencyRun = {
            rate,
            events: offered.total,
            offerMs: offered.offerMs,
            toTopic: percentiles(toTopic),
            toApplied: Option.getOrUndefined(
              Option.map(appliedTimes, (times) => percentiles(delays(offered.committedAt, times)))
            ),
            missing: offered.total - toTopic.length,
            stages,
            cpuPerThousand: cpu,
            p99BySecond: bySecond
          }
          runs.push(result)
          yield* BenchReport.print(
            `  kpipe (${label}) at ${BenchReport.fmt(rate)}/s: commit → on the topic p50 ${
              BenchReport.ms(result.toTopic.p50)
            }, p99 ${BenchReport.ms(result.toTopic.p99)}${
              result.toApplied === undefined
                ? ""
                : `; → applied p50 ${BenchReport.ms(result.toApplied.p50)}, p99 ${BenchReport.ms(result.toApplied.p99)}`
            }`
          )
          yield* BenchReport.print(`    ${bySecondText(bySecond)}`)
          // Whether the cores were free: one appending transaction every 10 ms costs the same at any rate.
          yield* printCpu(cpu)
          if (stages.length > 0) {
            yield* BenchReport.print(
              `    where the time goes at ${BenchReport.fmt(rate)}/s (each process's costliest spans):`
            )
            yield* BenchReport.table(
              StageSpans.header,
              stages.map(({ process, stage }) => StageSpans.cells(process, stage))
            )
          }
        }
        return runs
      })

    // 1. The relay alone drains the backlog onto the topic, as the connector did.
    const topicA = yield* makeTopic(config, "compare-kpipe-relay", created)
    const watcherA = yield* TopicWatcher.watch(topicA.name, config.base.partitions)
    const idsA: Array<string> = []
    yield* prime(topicA, watcherA, idsA)
    yield* vacuum(config.base)
    const a = yield* drainBacklog(
      watcherA,
      topicA,
      "kpipe: the relay alone draining the backlog",
      { relay: relay.pid },
      (onTopic) => `${BenchReport.fmt(onTopic.last())} of ${BenchReport.fmt(config.events)} on the topic`,
      (onTopic) => onTopic.atLeast(config.events, "kpipe relay drain"),
      idsA
    )
    const drain: Drain = {
      events: config.events,
      ms: lastOf(a.appended, watcherA.arrivals) - a.t0,
      cpuPerThousand: a.cpu
    }
    yield* BenchReport.print(
      `  relay alone drained ${BenchReport.fmt(config.events)} in ${BenchReport.fmt(drain.ms / 1000, 2)} s = ${
        BenchReport.rate(config.events, drain.ms)
      }`
    )
    yield* printCpu(drain.cpuPerThousand)

    // 1b. Latency at each offered rate through the relay alone: what the peer's runs measure (a
    // connector, no consumer beside it on the machine).
    yield* vacuum(config.base)
    const relayLatency = yield* latencyRuns(
      "relay alone",
      topicA,
      watcherA,
      [{ name: "relay", pid: relay.pid }],
      Option.none(),
      idsA
    )

    // 2. The same backlog end to end: relay and consumer processes, until every event is applied.
    const topicB = yield* makeTopic(config, "compare-kpipe-e2e", created)
    const group = TestKafka.uniqueName("compare-kpipe")
    const consumer = yield* Progress.during(
      "kpipe: starting the consumer process",
      () => "waiting for it to join",
      ServiceProcess.start({
        name: "compare-consumer",
        entry: consumerEntry,
        execArgv: config.processArgs,
        env: {
          ...env,
          COMPARE_TOPIC: topicB.name,
          COMPARE_GROUP: group,
          BENCH_PARTITIONS: String(config.base.partitions),
          [StageSpans.fileVariable]: spansOf.consumer,
          PG_APPLICATION_NAME: "kpipe-compare-consumer"
        }
      })
    )
    const watcherB = yield* TopicWatcher.watch(topicB.name, config.base.partitions)
    const idsB: Array<string> = []
    const applied = Effect.withTracerEnabled(processedCount(group), false)
    yield* prime(topicB, watcherB, idsB)
    yield* waitUntil(Effect.map(applied, (n) => n >= 1), "kpipe's first event applied", 60_000)
    yield* vacuum(config.base)
    let appliedSoFar = 1
    const b = yield* drainBacklog(
      watcherB,
      topicB,
      "kpipe: relay and consumer draining the backlog end to end",
      { relay: relay.pid, consumer: consumer.pid },
      (onTopic) =>
        `${BenchReport.fmt(onTopic.last())} on the topic, ${BenchReport.fmt(appliedSoFar - 1)} applied of ${
          BenchReport.fmt(config.events)
        }`,
      // The database is asked only once the topic holds everything: counting 200,000 rows every
      // few hundred ms would take CPU from the run. The end is the last applied_at either way.
      (onTopic) =>
        Effect.zipRight(
          onTopic.atLeast(config.events, "kpipe relay"),
          waitUntil(Effect.map(applied, (n) => (appliedSoFar = n) > config.events), "kpipe end to end", 600_000, 250)
        ),
      idsB
    )
    const appliedB = yield* appliedAt(group)
    const endToEnd: Drain = {
      events: config.events,
      ms: lastOf(b.appended, appliedB) - b.t0,
      cpuPerThousand: b.cpu
    }
    const relayInE2eMs = lastOf(b.appended, watcherB.arrivals) - b.t0
    yield* BenchReport.print(
      `  end to end: ${BenchReport.fmt(config.events)} applied in ${BenchReport.fmt(endToEnd.ms / 1000, 2)} s = ${
        BenchReport.rate(config.events, endToEnd.ms)
      } (on the topic after ${BenchReport.fmt(relayInE2eMs / 1000, 2)} s = ${
        BenchReport.rate(config.events, relayInE2eMs)
      })`
    )
    yield* printCpu(endToEnd.cpuPerThousand)

    // 3. Latency at each offered rate, through both processes.
    yield* vacuum(config.base)
    const latency = yield* latencyRuns(
      "relay and consumer",
      topicB,
      watcherB,
      [{ name: "relay", pid: relay.pid }, { name: "consumer", pid: consumer.pid }],
      Option.some(group),
      idsB
    )

    // The graceful path, as a deployment stops them (and what writes a --cpu-prof profile).
    yield* Effect.all([relay.stop, consumer.stop], { concurrency: 2 })
    const verification = yield* verifyExactlyOnce(group, new Set(idsB), config.base)
    yield* printVerification(verification, config.base)
    if (!verification.ok) return yield* new BenchFailure({ message: "kpipe: events were lost or applied twice" })
    return {
      relay: {
        name: "kpipe relay (a process)",
        label: "kpipe relay",
        drain,
        latency: relayLatency
      } satisfies SystemResult,
      endToEnd: {
        name: "kpipe relay + consumer (processes)",
        label: "kpipe e2e",
        endToEnd: { ...endToEnd, exactlyOnce: verification.ok },
        latency: latency.map((run) => ({ ...run, exactlyOnce: verification.ok }))
      } satisfies SystemResult
    }
  })

export const run = (config: CompareConfig, cluster: { readonly port: number }, note: string, created: Array<string>) =>
  Effect.gen(function*() {
    yield* BenchReport.print(
      `Us: kpipe OutboxRelay (concurrency ${config.base.pipelineRelay.concurrency}, batch ${config.base.pipelineRelay.batchSize}, retention ${config.relayRetention}) and the idempotent consumer, each a process of its own`
    )
    const url = PgCluster.databaseUrl(cluster, database)
    const result = yield* Effect.scoped(run_(config, url, note, created)).pipe(
      Effect.provide(
        Database.layerMigratedAt(Redacted.make(url), [PipelineMigrations.migrations, benchMigrations])
      )
    )
    yield* BenchReport.print()
    return result
  })
