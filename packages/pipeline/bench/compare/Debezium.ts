// The peer: Debezium's outbox EventRouter on Kafka Connect standalone 3.9.1, reading an outbox table
// through pgoutput from the bench's own cluster. Drained like the hand-run: the backlog is
// inserted while the connector is paused, then it is resumed.
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport, ServiceProcess } from "@kpipe/devtools"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import type { BenchEvent } from "../internal/events.ts"
import { vacuum, waitUntil } from "../internal/measure.ts"
import * as Jvm from "./Jvm.ts"
import * as PgCluster from "./PgCluster.ts"
import * as Progress from "./Progress.ts"
import { cpuMeter, delays, lastOf, type LatencyRun, percentiles, printCpu, type SystemResult } from "./Results.ts"
import * as TopicWatcher from "./TopicWatcher.ts"
import {
  appendBacklog,
  type CompareConfig,
  createTopic,
  makeWorkloadEvents,
  offerAtRate,
  payloadOf
} from "./Workload.ts"

const database = "compare_debezium"
const slot = "kpipe_bench"
const connector = "compare-outbox"

const properties = (entries: Record<string, string | number>) =>
  Object.entries(entries).map(([key, value]) => `${key}=${value}`).join("\n") + "\n"

const insertRows = (aggregateType: string) => (events: ReadonlyArray<BenchEvent>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql`INSERT INTO outbox ${
      sql.insert(events.map((event) => ({
        id: event.eventId,
        aggregatetype: aggregateType,
        aggregateid: event.key,
        type: event.type,
        payload: JSON.stringify(payloadOf(event))
      })))
    }`).pipe(Effect.asVoid)

const rest = (port: number) => (method: "GET" | "PUT", path: string) =>
  Effect.tryPromise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { method })
    const text = await response.text()
    return { status: response.status, body: text === "" ? undefined : (JSON.parse(text) as unknown) }
  })

const taskState = (body: unknown) => {
  const status = body as { connector?: { state?: string }; tasks?: Array<{ state?: string; trace?: string }> }
  return { connector: status.connector?.state, task: status.tasks?.[0]?.state, trace: status.tasks?.[0]?.trace }
}

const run_ = (config: CompareConfig, cluster: { readonly port: number }, note: string, created: Array<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const cp = yield* Jvm.classpath("debezium")
    yield* sql`
      CREATE TABLE outbox (
        id UUID PRIMARY KEY,
        aggregatetype TEXT NOT NULL,
        aggregateid TEXT NOT NULL,
        type TEXT NOT NULL,
        payload JSONB NOT NULL
      )`
    const aggregateType = TestKafka.uniqueName("compare-debezium")
    const topic = yield* createTopic(`outbox.event.${aggregateType}`, config.base.partitions, created)
    const append = insertRows(aggregateType)

    // Released after Connect stopped (finalizers run in reverse): its slot would keep WAL forever.
    yield* Effect.addFinalizer(() =>
      sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${slot}`.pipe(
        Effect.retry(Schedule.spaced("500 millis").pipe(Schedule.compose(Schedule.recurs(20)))),
        Effect.zipRight(sql`DROP PUBLICATION IF EXISTS ${sql(slot)}`),
        Effect.zipRight(BenchReport.print(`  Debezium's replication slot ${slot} and publication dropped`)),
        Effect.ignoreLogged
      )
    )

    // Connect's offsets of an earlier run point into a cluster that is gone: every run starts afresh.
    const dir = `${Jvm.runDir}/debezium`
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const restPort = yield* ServiceProcess.freePort
    writeFileSync(
      `${dir}/worker.properties`,
      properties({
        "bootstrap.servers": process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "offset.storage.file.filename": `${dir}/connect.offsets`,
        "offset.flush.interval.ms": 1000,
        "listeners": `http://127.0.0.1:${restPort}`,
        // As ours: every record acknowledged by all in-sync replicas, by an idempotent producer.
        "producer.acks": "all",
        "producer.enable.idempotence": "true"
      })
    )
    writeFileSync(
      `${dir}/outbox.properties`,
      properties({
        "name": connector,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": 1,
        "plugin.name": "pgoutput",
        "database.hostname": "127.0.0.1",
        "database.port": cluster.port,
        "database.user": "postgres",
        "database.dbname": database,
        "topic.prefix": "compare",
        "table.include.list": "public.outbox",
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "no_data",
        "poll.interval.ms": config.debeziumPollMs,
        "tombstones.on.delete": "false",
        "transforms": "outbox",
        "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter"
      })
    )
    const connect = yield* Jvm.start(
      cp,
      "org.apache.kafka.connect.cli.ConnectStandalone",
      [`${dir}/worker.properties`, `${dir}/outbox.properties`],
      `${dir}/connect.log`
    )
    const api = rest(restPort)
    const status = api("GET", `/connectors/${connector}/status`).pipe(
      Effect.map((r) =>
        r.status === 200 ? taskState(r.body) : { connector: undefined, task: undefined, trace: undefined }
      )
    )
    const awaitTask = (state: string, timeoutMs: number) =>
      waitUntil(
        status.pipe(
          Effect.flatMap((s) =>
            s.task === "FAILED"
              ? Effect.die(new Error(`Debezium task failed (see ${dir}/connect.log):\n${s.trace ?? ""}`))
              : Effect.succeed(s.task === state)
          ),
          Effect.orElseSucceed(() => false)
        ),
        `Debezium task ${state}`,
        timeoutMs,
        200
      )
    yield* Progress.during(
      "Kafka Connect standalone starting",
      () => "waiting for the task",
      awaitTask("RUNNING", 120_000)
    )

    const watcher = yield* TopicWatcher.watch(topic, config.base.partitions)
    // One event through first: the slot streams, the producer knows the topic's partitions.
    const primer = makeWorkloadEvents(1, config, note)
    yield* append(primer)
    yield* Progress.during(
      "Debezium: first event",
      () => `${watcher.arrivals.size} seen`,
      waitUntil(Effect.sync(() => watcher.arrivals.has(primer[0]!.eventId)), "Debezium's first event", 120_000)
    )

    // Drain
    yield* api("PUT", `/connectors/${connector}/pause`)
    yield* awaitTask("PAUSED", 30_000)
    const appended: Array<string> = []
    yield* Progress.during(
      `Debezium: inserting a backlog of ${BenchReport.fmt(config.events)} events (connector paused)`,
      () => `${BenchReport.fmt(appended.length)} inserted`,
      appendBacklog(config, note, append, appended)
    )
    const seen0 = watcher.arrivals.size
    const { cpu, t0 } = yield* watcher.paused((onTopic) =>
      Effect.gen(function*() {
        const meter = yield* cpuMeter({ Connect: connect.pid })
        const t0 = Date.now()
        yield* api("PUT", `/connectors/${connector}/resume`)
        yield* Progress.during(
          "Debezium: draining the backlog",
          () => `${BenchReport.fmt(onTopic.last())} of ${BenchReport.fmt(config.events)} on the topic`,
          onTopic.atLeast(config.events, "Debezium drain")
        )
        return { t0, cpu: yield* meter(config.events) }
      })
    )
    yield* Progress.during(
      "reading the backlog's append times",
      () => `${BenchReport.fmt(watcher.arrivals.size - seen0)} of ${BenchReport.fmt(config.events)}`,
      waitUntil(Effect.sync(() => watcher.arrivals.size - seen0 >= config.events), "Debezium drain: read back", 600_000)
    )
    const last = lastOf(appended, watcher.arrivals)
    const drain = { events: config.events, ms: last - t0, cpuPerThousand: cpu }
    yield* BenchReport.print(
      `  Debezium drained ${BenchReport.fmt(config.events)} in ${BenchReport.fmt(drain.ms / 1000, 2)} s = ${
        BenchReport.rate(config.events, drain.ms)
      }`
    )
    yield* printCpu(drain.cpuPerThousand)

    yield* vacuum(config.base)
    const latency: Array<LatencyRun> = []
    for (const rate of config.rates) {
      const seen = watcher.arrivals.size
      const latencyMeter = yield* cpuMeter({ Connect: connect.pid })
      const offered = yield* Progress.during(
        `Debezium at ${BenchReport.fmt(rate)} events/s for ${config.seconds} s`,
        () => `${BenchReport.fmt(watcher.arrivals.size - seen)} on the topic`,
        offerAtRate(config, rate, note, append).pipe(
          Effect.tap(({ total }) =>
            waitUntil(
              Effect.sync(() => watcher.arrivals.size - seen >= total),
              `Debezium: all events at ${rate}/s`,
              60_000,
              50
            )
          )
        )
      )
      const cpu = yield* latencyMeter(offered.total)
      const toTopic = delays(offered.committedAt, watcher.arrivals)
      latency.push({
        rate,
        events: offered.total,
        offerMs: offered.offerMs,
        toTopic: percentiles(toTopic),
        missing: offered.total - toTopic.length,
        cpuPerThousand: cpu
      })
      yield* BenchReport.print(
        `  Debezium at ${BenchReport.fmt(rate)}/s: commit → on the topic p50 ${
          BenchReport.ms(latency.at(-1)!.toTopic.p50)
        }, p99 ${BenchReport.ms(latency.at(-1)!.toTopic.p99)}`
      )
      yield* printCpu(cpu)
    }
    return { name: "Debezium outbox (Connect 3.9.1)", label: "Debezium", drain, latency } satisfies SystemResult
  })

export const run = (config: CompareConfig, cluster: { readonly port: number }, note: string, created: Array<string>) =>
  Effect.gen(function*() {
    yield* BenchReport.print(
      `The peer: Debezium ${"3.2.7.Final"} outbox EventRouter on Kafka Connect standalone 3.9.1 (pgoutput, poll.interval.ms ${config.debeziumPollMs})`
    )
    const url = PgCluster.databaseUrl(cluster, database)
    yield* Database.ensureExists(Redacted.make(url))
    const result = yield* Effect.scoped(run_(config, cluster, note, created)).pipe(
      Effect.provide(Database.layerConfig(Config.succeed(Redacted.make(url))))
    )
    yield* BenchReport.print()
    return result
  })
