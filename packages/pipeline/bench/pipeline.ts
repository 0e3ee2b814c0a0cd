// End-to-end benchmark of the pipeline against the real broker and PostgreSQL on this machine:
//   1. relay drain rate alone (and, for comparison, appending alone and consuming alone),
//   2. sustained outbox → relay → Kafka → idempotent consumer throughput, checked exactly once,
//   3. latency at a fixed offered rate.
// Each run also reports where the time went: CPU per process, what PostgreSQL's backends were
// doing (pg_stat_activity samples) and the time spent in each of the library's spans and SQL
// statements (a tracer that times them).
// Usage: pnpm bench. Sizes: BENCH_EVENTS, BENCH_RATE, BENCH_SECONDS; more knobs in `BenchConfig`.
import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { Admin, type Consumer } from "@kpipe/kafka"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { readdirSync, readFileSync } from "node:fs"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"
import {
  DeadLetter,
  IdempotentConsumer,
  Outbox,
  OutboxRelay,
  PipelineMigrations,
  Topic,
  TopicAdmin
} from "../src/index.ts"

// ---------------------------------------------------------------------------------------------
// Configuration

interface RelayVariant {
  readonly concurrency: number
  readonly batchSize: number
}

const relayVariants = (name: string, fallback: string) =>
  Config.string(name).pipe(
    Config.withDefault(fallback),
    Config.mapOrFail((text) => {
      const variants = text.split(",").map((part) => part.trim().split("x").map(Number))
      return variants.every((v) => v.length === 2 && v.every((n) => Number.isInteger(n) && n > 0))
        ? Either.right(variants.map(([concurrency, batchSize]): RelayVariant => ({
          concurrency: concurrency!,
          batchSize: batchSize!
        })))
        : Either.left(
          ConfigError.InvalidData([name], `expected "1x1000,2x2000" (concurrency x batch size), got ${text}`)
        )
    })
  )

const positive = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

const BenchConfig = Config.all({
  /** Events in the drain and end-to-end runs. */
  events: positive("BENCH_EVENTS", 50_000),
  /** Offered rate of the latency run, events/s. */
  rate: positive("BENCH_RATE", 1_000),
  /** Length of the latency run, seconds. */
  seconds: positive("BENCH_SECONDS", 15),
  appenders: positive("BENCH_APPENDERS", 8),
  partitions: positive("BENCH_PARTITIONS", 6),
  /** Aggregates the events belong to. */
  keys: positive("BENCH_KEYS", 100_000),
  /**
   * Aggregates one transaction writes events for, like one business operation (a member, an order);
   * appends to the same key are serialized, so this sets how much appenders contend.
   */
  keysPerTransaction: positive("BENCH_KEYS_PER_TX", 5),
  consumerBatch: positive("BENCH_CONSUMER_BATCH", 500),
  partitionsConsumedConcurrently: positive("BENCH_CONSUMER_CONCURRENCY", 3),
  /** Relay settings tried one after the other in the drain run. */
  drainVariants: relayVariants("BENCH_RELAY", "1x1000,2x1000,2x2000"),
  /** Relay settings of the end-to-end and latency runs. */
  pipelineRelay: relayVariants("BENCH_PIPELINE_RELAY", "2x1000").pipe(Config.map((variants) => variants[0]!)),
  /** Shards one relay claim may lock in runs 2 and 3 (the library's default when unset). */
  shardsPerClaim: Config.option(Config.integer("BENCH_SHARDS_PER_CLAIM")),
  /**
   * `insert` (the benchmark proper): one row per event into `bench_applied`. `none`: the handler
   * writes nothing, which isolates the cost of the handler's own statement (diagnostics only).
   */
  handler: Config.literal("insert", "none")("BENCH_HANDLER").pipe(Config.withDefault("insert" as const)),
  /**
   * VACUUM ANALYZE the bench database before each run, as autovacuum would between runs (never
   * during one). Matters where autovacuum is off: dead outbox rows then pile up in the partial index
   * the relay claims through.
   */
  vacuum: Config.boolean("BENCH_VACUUM").pipe(Config.withDefault(true)),
  /** Exit non-zero also when a target is missed (lost or doubled events always fail the run). */
  strict: Config.boolean("BENCH_STRICT").pipe(Config.withDefault(false))
})
type BenchConfig = Config.Config.Success<typeof BenchConfig>

const pipelineRelayOptions = (config: BenchConfig): OutboxRelay.RelayOptions => ({
  ...config.pipelineRelay,
  shardsPerClaim: Option.getOrUndefined(config.shardsPerClaim)
})

/** The pool is sized for the benchmark's concurrency; `PG_MAX_CONNECTIONS` in the environment still wins. */
const benchDefaults = new Map([["PG_MAX_CONNECTIONS", "20"], ["PG_APPLICATION_NAME", "kpipe-bench"]])
const configProvider = ConfigProvider.fromEnv().pipe(
  ConfigProvider.orElse(() => ConfigProvider.fromMap(benchDefaults))
)

const appendTxSize = { drain: 100, pipeline: 50 } as const
const latencyTickMs = 10

// ---------------------------------------------------------------------------------------------
// Events, topics, the handler's table

class BenchEvent extends Schema.Class<BenchEvent>("BenchEvent")({
  type: Schema.tag("BenchEvent"),
  version: Schema.Literal(1).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1 as const)),
  eventId: Schema.UUID,
  key: Schema.String,
  /** Epoch ms, taken just before the appending transaction begins. */
  appendedAt: Schema.Number,
  data: Schema.Struct({ amount: Schema.Number, note: Schema.String })
}) {}

const benchTopic = (prefix: string, partitions: number) => {
  const name = TestKafka.uniqueName(prefix)
  return Topic.make({
    name,
    partitions,
    retention: "1 hour",
    schema: BenchEvent,
    key: (event) => event.key,
    deadLetter: { name: `${name}.DLT`, retention: "1 hour" }
  })
}
type BenchTopic = ReturnType<typeof benchTopic>

const makeEvents = (count: number, config: Pick<BenchConfig, "keys" | "keysPerTransaction">) => {
  const appendedAt = Date.now()
  const keys = Array.from(
    { length: Math.min(count, config.keysPerTransaction) },
    () => `account-${Math.floor(Math.random() * config.keys)}`
  )
  return Array.from({ length: count }, (_, i) =>
    new BenchEvent({
      eventId: crypto.randomUUID(),
      key: keys[i % keys.length]!,
      appendedAt,
      data: { amount: Math.round(Math.random() * 100_000) / 100, note: "benchmark payload" }
    }))
}

const benchMigrations = {
  table: "kpipe_bench_migrations",
  loader: Migrator.fromRecord({
    "0001_bench_applied": Effect.flatMap(SqlClient, (sql) =>
      sql`
        CREATE TABLE bench_applied (
          consumer_group TEXT NOT NULL,
          event_id TEXT NOT NULL,
          message_key TEXT NOT NULL,
          appended_at DOUBLE PRECISION NOT NULL,
          applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )`)
  })
}

class BenchFailure extends Data.TaggedError("BenchFailure")<{ readonly message: string }> {}

// ---------------------------------------------------------------------------------------------
// Measuring

const percentile = (sorted: ArrayLike<number>, q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

const sortedOf = (values: Iterable<number>) => Float64Array.from(values).sort()

interface SpanStat {
  count: number
  totalMs: number
  items: number
  readonly samples: Array<number>
}

/** Durations of the library's spans and of each SQL statement, by name: a poor man's pg_stat_statements. */
class SpanRecorder {
  stats = new Map<string, SpanStat>()
  private renames: ReadonlyMap<string, string> = new Map()
  private readonly queryNames = new Map<string, string>()

  private normalized = new Map<string, string>()

  reset(renames: ReadonlyMap<string, string>) {
    this.stats = new Map()
    this.renames = renames
    this.normalized = new Map()
  }

  normalize(name: string) {
    let result = this.normalized.get(name)
    if (result === undefined) {
      result = name
      for (const [from, to] of this.renames) result = result.replaceAll(from, to)
      this.normalized.set(name, result)
    }
    return result
  }

  query(text: string) {
    let name = this.queryNames.get(text)
    if (name === undefined) {
      name = `SQL ${text.replace(/\s+/g, " ").trim().slice(0, 64)}`
      this.queryNames.set(text, name)
    }
    return name
  }

  record(name: string, ms: number, items = 0) {
    const stat = this.stats.get(name)
    if (stat === undefined) this.stats.set(name, { count: 1, totalMs: ms, items, samples: [ms] })
    else {
      stat.count++
      stat.totalMs += ms
      stat.items += items
      stat.samples.push(ms)
    }
  }
}

const nanosToMs = (nanos: bigint) => Number(nanos) / 1e6

const numberAttribute = (attributes: ReadonlyMap<string, unknown>, ...names: ReadonlyArray<string>) => {
  for (const name of names) {
    const value = attributes.get(name)
    if (typeof value === "number") return value
  }
  return 0
}

/**
 * Delegates to the default tracer and times each span when it ends. A transaction is also split
 * into "acquire+BEGIN" (pool wait and BEGIN, until its first child starts) and "COMMIT".
 */
const recordingTracer = (base: Tracer.Tracer, recorder: SpanRecorder): Tracer.Tracer => {
  const firstChildAt = new WeakMap<Tracer.Span, bigint>()
  return Tracer.make({
    context: (f, fiber) => base.context(f, fiber),
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = base.span(name, parent, context, links, startTime, kind, options)
      const parentSpan = Option.getOrUndefined(parent)
      const parentName = parentSpan?._tag === "Span" ? parentSpan.name : "root"
      if (parentSpan?._tag === "Span" && !firstChildAt.has(parentSpan)) firstChildAt.set(parentSpan, startTime)
      let commitAt: bigint | undefined
      const wrapped: Tracer.Span = {
        _tag: "Span",
        name,
        get spanId() {
          return span.spanId
        },
        get traceId() {
          return span.traceId
        },
        parent,
        context,
        get status() {
          return span.status
        },
        get attributes() {
          return span.attributes
        },
        get links() {
          return span.links
        },
        get sampled() {
          return span.sampled
        },
        kind,
        attribute: (key, value) => span.attribute(key, value),
        addLinks: (added) => span.addLinks(added),
        event: (event, time, attributes) => {
          if (event === "db.transaction.commit") commitAt = time
          span.event(event, time, attributes)
        },
        end: (endTime, exit) => {
          span.end(endTime, exit)
          const ms = nanosToMs(endTime - startTime)
          if (name === "sql.execute") {
            const text = span.attributes.get("db.query.text")
            recorder.record(recorder.query(typeof text === "string" ? text : "?"), ms)
            return
          }
          const label = name === "sql.transaction" ? `TX ${recorder.normalize(parentName)}` : recorder.normalize(name)
          recorder.record(label, ms, numberAttribute(span.attributes, "messaging.batch.message_count", "size"))
          if (name === "sql.transaction") {
            const first = firstChildAt.get(wrapped)
            if (first !== undefined) recorder.record(`${label}: acquire+BEGIN`, nanosToMs(first - startTime))
            if (commitAt !== undefined) recorder.record(`${label}: COMMIT`, nanosToMs(endTime - commitAt))
          }
        }
      }
      return wrapped
    }
  })
}

const clockTicks = 100

/** CPU seconds used so far by the PostgreSQL and Kafka (java) processes of this machine. */
const readProcesses = () => {
  const byPid = new Map<string, { readonly name: "postgres" | "java"; readonly seconds: number }>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
      if (name !== "postgres" && name !== "java") continue
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      byPid.set(entry, { name, seconds: (Number(fields[11]) + Number(fields[12])) / clockTicks })
    } catch {
      // the process ended meanwhile
    }
  }
  return byPid
}

/** CPU seconds of the processes alive at `end` (one that ended meanwhile is missed, never counted negative). */
const processSeconds = (
  start: ReturnType<typeof readProcesses>,
  end: ReturnType<typeof readProcesses>,
  name: "postgres" | "java"
) => {
  let total = 0
  for (const [pid, now] of end) {
    if (now.name === name) total += now.seconds - (start.get(pid)?.seconds ?? 0)
  }
  return total
}

const readMachine = () => {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const idle = fields[3]! + fields[4]!
  const total = fields.reduce((a, b) => a + b, 0)
  return { busy: (total - idle) / clockTicks, total: total / clockTicks }
}

interface CpuSnapshot {
  readonly at: number
  readonly process: NodeJS.CpuUsage
  readonly elu: ReturnType<typeof performance.eventLoopUtilization>
  readonly machine: ReturnType<typeof readMachine>
  readonly processes: ReturnType<typeof readProcesses>
}

const cpuSnapshot = Effect.sync((): CpuSnapshot => ({
  at: performance.now(),
  process: process.cpuUsage(),
  elu: performance.eventLoopUtilization(),
  machine: readMachine(),
  processes: readProcesses()
}))

const cpuSince = (start: CpuSnapshot) =>
  Effect.map(cpuSnapshot, (end) => {
    const seconds = (end.at - start.at) / 1000
    const usage = process.cpuUsage(start.process)
    const machineTotal = end.machine.total - start.machine.total
    return {
      machine: machineTotal === 0
        ? 0
        : ((end.machine.busy - start.machine.busy) / machineTotal) * Os.availableParallelism(),
      benchUser: usage.user / 1e6 / seconds,
      benchSystem: usage.system / 1e6 / seconds,
      eventLoop: performance.eventLoopUtilization(end.elu, start.elu).utilization,
      postgres: processSeconds(start.processes, end.processes, "postgres") / seconds,
      kafka: processSeconds(start.processes, end.processes, "java") / seconds
    }
  })
type Cpu = Effect.Effect.Success<ReturnType<typeof cpuSince>>

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

interface Window {
  readonly wallMs: number
  readonly cpu: Cpu
  readonly spans: ReadonlyMap<string, SpanStat>
  readonly activity: ReadonlyMap<string, number>
  readonly activitySamples: number
}

/** Runs `effect` and measures it: wall time, CPU, PostgreSQL activity and spans. */
const measure = <A, E, R>(recorder: SpanRecorder, topic: BenchTopic, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const activity = new Map<string, number>()
    const samples = { n: 0 }
    recorder.reset(new Map([[topic.name, "<topic>"]]))
    const sampler = yield* Effect.fork(sampleActivity(activity, samples))
    const cpu0 = yield* cpuSnapshot
    const start = performance.now()
    const result = yield* effect
    const wallMs = performance.now() - start
    const cpu = yield* cpuSince(cpu0)
    yield* Fiber.interrupt(sampler)
    const window: Window = { wallMs, cpu, spans: recorder.stats, activity, activitySamples: samples.n }
    return [result, window] as const
  })

const counterValue = (counter: Metric.Metric.Counter<number>) =>
  Effect.map(Metric.value(counter), (state) => state.count)

/** Polls `check` (untraced, so it stays out of the span figures). */
const waitUntil = <E, R>(check: Effect.Effect<boolean, E, R>, what: string, timeoutMs: number, everyMs = 20) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep(everyMs)
  }).pipe(
    Effect.withTracerEnabled(false),
    Effect.timeoutFail({
      duration: timeoutMs,
      onTimeout: () => new BenchFailure({ message: `${what}: not reached within ${timeoutMs / 1000} s` })
    })
  )

/** What autovacuum would have done between two runs (see `BenchConfig.vacuum`). */
const vacuum = (config: BenchConfig) =>
  config.vacuum
    ? Effect.flatMap(SqlClient, (sql) => sql`VACUUM ANALYZE`).pipe(Effect.asVoid, Effect.withTracerEnabled(false))
    : Effect.void

// ---------------------------------------------------------------------------------------------
// Printing

const print = (line = "") => Effect.sync(() => process.stdout.write(`${line}\n`))
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a"
const ms = (n: number) => `${fmt(n, n < 10 ? 2 : 0)} ms`
const rate = (count: number, wallMs: number) => `${fmt(count / (wallMs / 1000))} events/s`

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, indent = "    ") => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    indent + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  return Effect.forEach(
    [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)],
    (text) => print(text.trimEnd()),
    { discard: true }
  )
}

/** Microseconds of the bench process's CPU per event. */
const cpuPerEvent = (window: Window, events: number) =>
  ((window.cpu.benchUser + window.cpu.benchSystem) * window.wallMs * 1000) / events

const otherCpu = (cpu: Cpu) => Math.max(0, cpu.machine - cpu.benchUser - cpu.benchSystem - cpu.postgres - cpu.kafka)

const printWindow = (window: Window, events: number, spanLimit: number) =>
  Effect.gen(function*() {
    const { cpu } = window
    const perEvent = cpuPerEvent(window, events)
    yield* print(
      `    CPU, cores of ${Os.availableParallelism()}: machine ${fmt(cpu.machine, 2)} | bench process ${
        fmt(cpu.benchUser + cpu.benchSystem, 2)
      } (user ${fmt(cpu.benchUser, 2)}, kernel ${fmt(cpu.benchSystem, 2)}; event loop ${
        fmt(cpu.eventLoop * 100)
      }% busy; ${fmt(perEvent)} µs per event) | postgres ${fmt(cpu.postgres, 2)} | kafka broker ${
        fmt(cpu.kafka, 2)
      } | other processes ${fmt(otherCpu(cpu), 2)}`
    )
    if (window.activitySamples > 0) {
      const rows = [...window.activity]
        .sort(([, a], [, b]) => b - a)
        .slice(0, 6)
        .map(([state, n]) => [state, fmt(n / window.activitySamples, 2)])
      yield* print(
        `    PostgreSQL backends of the bench database that are not idle (${window.activitySamples} samples of pg_stat_activity):`
      )
      yield* table(["state / wait event", "avg backends"], rows, "      ")
    }
    const spans = [...window.spans]
      .sort(([, a], [, b]) => b.totalMs - a.totalMs)
      .slice(0, spanLimit)
      .map(([name, stat]) => [
        name.length > 74 ? `${name.slice(0, 73)}…` : name,
        fmt(stat.count),
        fmt(stat.totalMs / 1000, 2),
        `${fmt((stat.totalMs / window.wallMs) * 100)}%`,
        fmt(stat.totalMs / stat.count, 2),
        fmt(percentile(sortedOf(stat.samples), 0.99), 1),
        stat.items > 0 ? fmt(stat.items / stat.count) : ""
      ])
    yield* print("    Time in spans (summed over concurrent fibers; busy% = total / wall time, can exceed 100%):")
    yield* table(["span", "calls", "total s", "busy%", "mean ms", "p99 ms", "items/call"], spans, "      ")
  })

// ---------------------------------------------------------------------------------------------
// Building blocks

const KafkaLive = TestKafka.layer
const BenchLive = Layer.mergeAll(KafkaLive, DeadLetter.layer.pipe(Layer.provide(KafkaLive))).pipe(
  Layer.provideMerge(Database.layerTest([PipelineMigrations.migrations, benchMigrations]))
)

/** Every topic made here is deleted when the run ends. */
const createTopic = (prefix: string, config: BenchConfig, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = benchTopic(prefix, config.partitions)
    const admin = yield* Admin.Admin
    created.push(...(yield* admin.createTopics(TopicAdmin.specs([topic]))))
    return topic
  })

const appendTx = (topic: BenchTopic, events: ReadonlyArray<BenchEvent>) =>
  Effect.flatMap(SqlClient, (sql) => sql.withTransaction(Outbox.append(topic, ...events))).pipe(
    Effect.withSpan("bench.append")
  )

/** `total` events in transactions of `txSize`, `concurrency` transactions at a time; `appended` gets their ids. */
const appendAll = (
  topic: BenchTopic,
  config: BenchConfig,
  txSize: number,
  appended: Set<string>
) =>
  Effect.forEach(
    Array.from({ length: Math.ceil(config.events / txSize) }, (_, i) => Math.min(txSize, config.events - i * txSize)),
    (size) =>
      Effect.suspend(() => {
        const events = makeEvents(size, config)
        return appendTx(topic, events).pipe(
          Effect.zipRight(Effect.sync(() => events.forEach((event) => appended.add(event.eventId))))
        )
      }),
    { concurrency: config.appenders, discard: true }
  )

type OnApplied = (event: BenchEvent, record: Consumer.ConsumerRecord) => void

const startConsumer = (topic: BenchTopic, group: string, config: BenchConfig, onApplied: OnApplied = () => {}) =>
  IdempotentConsumer.run({
    topic,
    groupId: group,
    handleBatch: (delivered) =>
      Effect.flatMap(
        SqlClient,
        (sql) =>
          config.handler === "none" ?
            Effect.void :
            sql`INSERT INTO bench_applied ${
              sql.insert(delivered.map(({ event }) => ({
                consumerGroup: group,
                eventId: event.eventId,
                messageKey: event.key,
                appendedAt: event.appendedAt
              })))
            }`.pipe(Effect.asVoid)
      ).pipe(Effect.zipRight(Effect.sync(() => delivered.forEach(({ event, record }) => onApplied(event, record))))),
    errors: { SqlError: "retry" },
    batchSize: config.consumerBatch,
    kafka: {
      ...TestKafka.fastConsumer,
      partitionsConsumedConcurrently: config.partitionsConsumedConcurrently,
      maxWaitTimeInMs: 50
    }
  })

const processedCount = (group: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_processed_events WHERE consumer_group = ${group}`
  ).pipe(
    Effect.map(([row]) => row!.n)
  )

/** Waits until `count` events are applied: the consumer's own counter first, then the table. */
const awaitApplied = (group: string, applied0: number, count: number, timeoutMs: number) =>
  Effect.zipRight(
    waitUntil(
      Effect.map(counterValue(IdempotentConsumer.appliedTotal), (n) => n - applied0 >= count),
      `${count} events applied`,
      timeoutMs
    ),
    waitUntil(
      Effect.map(processedCount(group), (n) => n >= count),
      `${count} events in kpipe_processed_events`,
      10_000
    )
  )

/**
 * Every appended event applied exactly once by `group`: the handler's rows are exactly the
 * appended ids (with BENCH_HANDLER=none only the consumer's claims can be checked).
 */
const verifyExactlyOnce = (group: string, appended: ReadonlySet<string>, config: BenchConfig) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = config.handler === "insert"
      ? yield* sql<{ eventId: string }>`SELECT event_id FROM bench_applied WHERE consumer_group = ${group}`
      : yield* sql<{ eventId: string }>`
          SELECT event_id FROM kpipe_processed_events WHERE consumer_group = ${group} AND outcome = 'APPLIED'`
    const claims = yield* processedCount(group)
    const [dead] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM kpipe_failed_events WHERE consumer_group = ${group}`
    const distinct = new Set(rows.map((row) => row.eventId))
    const missing = [...appended].filter((id) => !distinct.has(id)).length
    const unknown = [...distinct].filter((id) => !appended.has(id)).length
    const result = {
      appended: appended.size,
      rows: rows.length,
      distinct: distinct.size,
      missing,
      doubleApplied: rows.length - distinct.size,
      unknown,
      claims,
      deadLettered: dead!.n
    }
    const ok = result.rows === result.appended && result.distinct === result.appended && missing === 0 &&
      unknown === 0 && claims === result.appended && result.deadLettered === 0
    return { ...result, ok }
  })
type Verification = Effect.Effect.Success<ReturnType<typeof verifyExactlyOnce>>

const printVerification = (v: Verification, config: BenchConfig) =>
  print(
    `    exactly once: ${v.ok ? "OK" : "FAILED"}: appended ${fmt(v.appended)}, ${
      config.handler === "insert" ? "handler rows" : "claims (BENCH_HANDLER=none)"
    } ${fmt(v.rows)}, distinct ${fmt(v.distinct)}, missing ${fmt(v.missing)}, applied twice ${
      fmt(v.doubleApplied)
    }, unknown ${fmt(v.unknown)}, kpipe_processed_events ${fmt(v.claims)}, dead-lettered ${fmt(v.deadLettered)}`
  )

// ---------------------------------------------------------------------------------------------
// 1. Relay drain rate alone (and appending alone, consuming alone)

const drainRun = (config: BenchConfig, variant: RelayVariant, recorder: SpanRecorder, created: Array<string>) =>
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
const consumeRun = (
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

// ---------------------------------------------------------------------------------------------
// 2. Sustained end-to-end throughput

interface Sample {
  readonly t: number
  readonly appended: number
  readonly published: number
  readonly applied: number
}

const pipelineRun = (config: BenchConfig, recorder: SpanRecorder, created: Array<string>) =>
  Effect.gen(function*() {
    const topic = yield* createTopic("bench-e2e", config, created)
    yield* vacuum(config)
    const group = TestKafka.uniqueName("bench-e2e")
    const appended = new Set<string>()
    const timeline: Array<Sample> = []
    const [result, window] = yield* Effect.scoped(Effect.gen(function*() {
      yield* startConsumer(topic, group, config)
      yield* OutboxRelay.run(pipelineRelayOptions(config))
      const published0 = yield* counterValue(OutboxRelay.publishedTotal)
      const applied0 = yield* counterValue(IdempotentConsumer.appliedTotal)
      const duplicates0 = yield* counterValue(IdempotentConsumer.duplicatesTotal)
      return yield* measure(
        recorder,
        topic,
        Effect.gen(function*() {
          const start = performance.now()
          const sample = Effect.gen(function*() {
            timeline.push({
              t: (performance.now() - start) / 1000,
              appended: appended.size,
              published: (yield* counterValue(OutboxRelay.publishedTotal)) - published0,
              applied: (yield* counterValue(IdempotentConsumer.appliedTotal)) - applied0
            })
          })
          const sampler = yield* Effect.fork(Effect.repeat(sample, Schedule.fixed("1 second")))
          const appenders = yield* appendAll(topic, config, appendTxSize.pipeline, appended).pipe(
            Effect.zipRight(Effect.sync(() => performance.now() - start)),
            Effect.fork
          )
          yield* awaitApplied(group, applied0, config.events, 180_000)
          const totalMs = performance.now() - start
          const appendMs = yield* Fiber.join(appenders)
          yield* Fiber.interrupt(sampler)
          yield* sample
          const duplicates = (yield* counterValue(IdempotentConsumer.duplicatesTotal)) - duplicates0
          return { totalMs, appendMs, duplicates }
        })
      )
    }))
    return { ...result, window, timeline, verification: yield* verifyExactlyOnce(group, appended, config) }
  })

// ---------------------------------------------------------------------------------------------
// 3. Latency at a fixed offered rate

const latencyRun = (config: BenchConfig, recorder: SpanRecorder, created: Array<string>) =>
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
          const fibers: Array<Fiber.RuntimeFiber<void, unknown>> = []
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
          // Open loop: each transaction is forked, so a slow commit never delays the next tick. A tick
          // appends what is due by the clock: a timer that fires early (Schedule.fixed then runs twice
          // for one boundary) or late does not change the offered rate.
          let started = 0
          const start = performance.now()
          const tick = Effect.suspend(() => {
            const due = Math.max(
              0,
              Math.min(ticks, Math.floor((performance.now() - start) / latencyTickMs) + 1) - started
            )
            started += due
            return Effect.forEach(
              Array.from({ length: due }),
              () => Effect.map(Effect.fork(appendOne), (fiber) => void fibers.push(fiber)),
              { discard: true }
            )
          })
          yield* Effect.repeat(tick, { schedule: Schedule.fixed(latencyTickMs), until: () => started >= ticks })
          const offerMs = performance.now() - start
          yield* Fiber.joinAll(fibers)
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
      sinceAppend: sortedOf(sinceAppend),
      sinceCommit: sortedOf(ids.map((id) => handledAt.get(id)! - committedAt.get(id)!)),
      commitToProduce: sortedOf(ids.map((id) => producedAt.get(id)! - committedAt.get(id)!)),
      produceToHandle: sortedOf(ids.map((id) => handledAt.get(id)! - producedAt.get(id)!)),
      appendTx: sortedOf(appendTxMs),
      verification: yield* verifyExactlyOnce(group, appended, config)
    }
  })

// ---------------------------------------------------------------------------------------------
// The program

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
  const poolSize = yield* Config.integer("PG_MAX_CONNECTIONS")

  const [server] = yield* sql<{ version: string; synchronousCommit: string; autovacuum: string }>`
    SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit,
           current_setting('autovacuum') AS autovacuum`
  const cluster = yield* admin.describeCluster
  yield* print("kpipe pipeline benchmark")
  yield* print(
    `  machine: ${Os.availableParallelism()} cores (${Os.cpus()[0]?.model.trim() ?? "?"}), ${
      fmt(Os.totalmem() / 2 ** 30, 1)
    } GiB, node ${process.version}; PostgreSQL ${server!.version.split(" ")[0]} (synchronous_commit ${
      server!.synchronousCommit
    }, autovacuum ${server!.autovacuum}); Kafka: ${cluster.brokers.length} broker at ${
      cluster.brokers.map((b) => `${b.host}:${b.port}`).join(",")
    }; load average at start ${Os.loadavg().map((n) => fmt(n, 2)).join(" ")}`
  )
  yield* print(
    `  events ${fmt(config.events)} | appenders ${config.appenders} | keys ${
      fmt(config.keys)
    } (${config.keysPerTransaction} per transaction) | partitions ${config.partitions} | pool ${poolSize} connections | consumer: batch ${config.consumerBatch}, ${config.partitionsConsumedConcurrently} partitions at once, handler ${
      config.handler === "insert"
        ? "inserts each transaction's events with one statement (handleBatch)"
        : "writes nothing (BENCH_HANDLER=none)"
    }`
  )
  yield* print(
    config.vacuum
      ? `  VACUUM ANALYZE of the bench database before each run, as autovacuum would do between runs (BENCH_VACUUM=false: never)`
      : `  no VACUUM between runs (BENCH_VACUUM=false): dead outbox rows of earlier runs stay in the relay's index`
  )
  yield* print()

  // 1.
  yield* print(
    `1. Relay drain rate alone: ${
      fmt(config.events)
    } events appended first (transactions of ${appendTxSize.drain}, ${config.appenders} appenders, relay not running), then the relay started`
  )
  const drains: Array<{ variant: RelayVariant; wallMs: number }> = []
  const stages: Array<{ name: string; events: number; wallMs: number; window: Window }> = []
  for (const variant of config.drainVariants) {
    const run = yield* traced(drainRun(config, variant, recorder, created))
    drains.push({ variant, wallMs: run.drain.wallMs })
    stages.push({
      name: `relay alone (concurrency ${variant.concurrency}, batch ${variant.batchSize})`,
      events: config.events,
      wallMs: run.drain.wallMs,
      window: run.drain
    })
    yield* print()
    yield* print(
      `  relay concurrency ${variant.concurrency}, batch ${variant.batchSize}: ${fmt(config.events)} drained in ${
        fmt(run.drain.wallMs / 1000, 2)
      } s = ${rate(config.events, run.drain.wallMs)}`
    )
    yield* printWindow(run.drain, config.events, 10)
    if (drains.length === 1) {
      yield* print()
      yield* print(
        `  for comparison, appending alone (the pre-fill above): ${fmt(run.append.wallMs / 1000, 2)} s = ${
          rate(config.events, run.append.wallMs)
        }`
      )
      yield* printWindow(run.append, config.events, 8)
      stages.push({
        name: `appending alone (${config.appenders} appenders, transactions of ${appendTxSize.drain})`,
        events: config.events,
        wallMs: run.append.wallMs,
        window: run.append
      })
      const consume = yield* traced(consumeRun(config, run.topic, run.appended, recorder))
      yield* print()
      yield* print(
        `  for comparison, consuming alone (those ${fmt(config.events)} events, new group, nothing else running): ${
          fmt(consume.window.wallMs / 1000, 2)
        } s = ${rate(config.events, consume.window.wallMs)} (group join included: ${ms(consume.joinMs)})`
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
  yield* print()

  // 2.
  yield* print(
    `2. End to end, sustained: ${
      fmt(config.events)
    } events from ${config.appenders} appenders (transactions of ${appendTxSize.pipeline}) while relay (concurrency ${config.pipelineRelay.concurrency}, batch ${config.pipelineRelay.batchSize}${
      Option.match(config.shardsPerClaim, { onNone: () => "", onSome: (n) => `, ${n} shards per claim` })
    }) and consumer run`
  )
  const e2e = yield* traced(pipelineRun(config, recorder, created))
  yield* print(
    `    first append → all ${fmt(config.events)} applied: ${fmt(e2e.totalMs / 1000, 2)} s = ${
      rate(config.events, e2e.totalMs)
    }`
  )
  yield* print(
    `    appending finished after ${fmt(e2e.appendMs / 1000, 2)} s (${
      rate(config.events, e2e.appendMs)
    } offered); duplicates the consumer skipped: ${fmt(e2e.duplicates)}`
  )
  yield* printVerification(e2e.verification, config)
  yield* print(
    "    Progress (published = relay sends acknowledged by Kafka, applied = consumer transactions committed):"
  )
  yield* table(
    ["t s", "appended", "published", "applied", "relay backlog", "consumer backlog"],
    e2e.timeline.map((row) => [
      fmt(row.t, 1),
      fmt(row.appended),
      fmt(row.published),
      fmt(row.applied),
      fmt(row.appended - row.published),
      fmt(row.published - row.applied)
    ]),
    "      "
  )
  yield* printWindow(e2e.window, config.events, 18)
  yield* print()

  // 3.
  yield* print(
    `3. Latency at ${fmt(config.rate)} events/s offered for ${config.seconds} s (a transaction of ${
      fmt(config.rate * latencyTickMs / 1000)
    } events every ${latencyTickMs} ms on Schedule.fixed, open loop)`
  )
  const latency = yield* traced(latencyRun(config, recorder, created))
  yield* print(
    `    offered ${fmt(latency.total)} events in ${fmt(latency.offerMs / 1000, 2)} s = ${
      rate(latency.total, latency.offerMs)
    }; arrived at the handler: ${fmt(latency.handled)} of ${fmt(latency.total)}`
  )
  yield* printVerification(latency.verification, config)
  const quantiles = (sorted: Float64Array) => [
    ms(percentile(sorted, 0.5)),
    ms(percentile(sorted, 0.95)),
    ms(percentile(sorted, 0.99)),
    ms(sorted[sorted.length - 1] ?? Number.NaN)
  ]
  yield* table(["end-to-end latency per event", "p50", "p95", "p99", "max"], [
    ["append (payload appendedAt) → handler", ...quantiles(latency.sinceAppend)],
    ["append commit → handler", ...quantiles(latency.sinceCommit)],
    ["  append transaction itself", ...quantiles(latency.appendTx)],
    ["  commit → relay's send (record timestamp)", ...quantiles(latency.commitToProduce)],
    ["  relay's send → handler (Kafka + consumer)", ...quantiles(latency.produceToHandle)]
  ])
  yield* printWindow(latency.window, latency.total, 18)
  yield* print()

  // Summary
  stages.push({ name: "end to end (run 2)", events: config.events, wallMs: e2e.totalMs, window: e2e.window })
  stages.push({
    name: `latency run (${fmt(config.rate)} events/s offered)`,
    events: latency.total,
    wallMs: latency.offerMs,
    window: latency.window
  })
  const perEvent = (window: Window, events: number, cores: number) => (cores * window.wallMs * 1000) / events
  yield* print(
    "Summary: rate of each stage, and CPU per event (µs) of the bench process (one Node event loop), PostgreSQL and Kafka"
  )
  yield* table(
    ["stage", "events/s", "event loop busy", "bench µs", "postgres µs", "kafka µs", "other processes, cores"],
    stages.map(({ events, name, wallMs, window }) => [
      name,
      fmt(events / (wallMs / 1000)),
      `${fmt(window.cpu.eventLoop * 100)}%`,
      fmt(cpuPerEvent(window, events)),
      fmt(perEvent(window, events, window.cpu.postgres)),
      fmt(perEvent(window, events, window.cpu.kafka)),
      fmt(otherCpu(window.cpu), 2)
    ]),
    "  "
  )
  const e2eCpu = cpuPerEvent(e2e.window, config.events) + perEvent(e2e.window, config.events, e2e.window.cpu.postgres) +
    perEvent(e2e.window, config.events, e2e.window.cpu.kafka)
  yield* print(
    `  End to end costs ${
      fmt(e2eCpu)
    } µs of CPU per event; all ${Os.availableParallelism()} cores doing nothing else would give at most ${
      fmt((Os.availableParallelism() * 1e6) / e2eCpu)
    } events/s, and one event loop at 100% at most ${fmt(1e6 / cpuPerEvent(e2e.window, config.events))} events/s.`
  )
  yield* print(
    "  (postgres counts every backend on the server, so also other users' while they run; processes that end during a run are missed)"
  )
  yield* print()

  // Targets
  const e2eRate = config.events / (e2e.totalMs / 1000)
  const best = drains.reduce((a, b) => (b.wallMs < a.wallMs ? b : a))
  const throughputMet = e2eRate >= 5_000 && e2e.verification.ok
  const p99 = percentile(latency.sinceAppend, 0.99)
  const latencyMet = p99 <= 100 && latency.verification.ok && config.rate >= 1_000
  yield* print("Targets")
  yield* print(
    `  relay drain alone: best ${
      rate(config.events, best.wallMs)
    } (concurrency ${best.variant.concurrency}, batch ${best.variant.batchSize})`
  )
  yield* print(
    `  ≥ 5,000 events/s end to end with zero loss and zero double-apply: ${throughputMet ? "MET" : "NOT MET"} (${
      fmt(e2eRate)
    } events/s, ${e2e.verification.ok ? "exactly once" : "NOT exactly once"})`
  )
  yield* print(
    `  p99 ≤ 100 ms at 1,000 events/s: ${latencyMet ? "MET" : "NOT MET"} (p99 ${ms(p99)} at ${
      fmt(config.rate)
    } events/s offered${latency.verification.ok ? "" : ", events lost or applied twice"})`
  )

  if (!e2e.verification.ok || !latency.verification.ok) {
    return yield* new BenchFailure({ message: "events were lost or applied twice (see above)" })
  }
  if (config.strict && !(throughputMet && latencyMet)) {
    return yield* new BenchFailure({ message: "a target was missed and BENCH_STRICT is set" })
  }
})

/** The library's logs are quiet unless something goes wrong; `BENCH_LOG_LEVEL=Info` (or `Debug`) shows more. */
const main = Effect.gen(function*() {
  const level = yield* Config.logLevel("BENCH_LOG_LEVEL").pipe(Config.withDefault(LogLevel.Warning))
  return yield* Effect.scoped(program).pipe(Effect.provide(BenchLive), Logger.withMinimumLogLevel(level))
}).pipe(Effect.withConfigProvider(configProvider))

const fiber = Effect.runFork(main)
// Interrupting closes every scope: topics deleted, consumers stopped, test database dropped.
process.once("SIGINT", () => fiber.unsafeInterruptAsFork(fiber.id()))
process.once("SIGTERM", () => fiber.unsafeInterruptAsFork(fiber.id()))
fiber.addObserver((exit) => {
  if (Exit.isFailure(exit)) {
    const failure = Cause.failureOption(exit.cause)
    const reason = Option.isSome(failure) && failure.value instanceof BenchFailure
      ? failure.value.message
      : Cause.isInterruptedOnly(exit.cause)
      ? "interrupted"
      : Cause.pretty(exit.cause)
    process.stderr.write(`\nbench FAILED: ${reason}\n`)
    process.exitCode = 1
  }
  // Everything was released above. A kafkajs consumer interrupted in the middle of a batch can
  // still restart itself afterwards (seen on Ctrl-C); do not let it keep the benchmark alive.
  setTimeout(() => {
    process.stderr.write("bench: still running 5 s after the end (a kafkajs client left behind); exiting\n")
    process.exit()
  }, 5_000).unref()
})
