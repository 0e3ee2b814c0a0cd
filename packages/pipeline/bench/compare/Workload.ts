// The one workload every system in the comparison gets: the same events (BenchEvent, padded to
// BENCH_RECORD_BYTES of JSON as PostgreSQL's jsonb prints it), the same key spread, the same
// transaction sizes, the same backlog and offered rates.
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport } from "@kpipe/devtools"
import { Admin } from "@kpipe/kafka"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { appendTxSize, BenchConfig, latencyTickMs } from "../internal/config.ts"
import { BenchEvent, makeEvents } from "../internal/events.ts"
import { offerOpenLoop } from "../internal/offer.ts"

const positive = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

const phaseNames = ["limit", "debezium", "kpipe"] as const
export type Phase = typeof phaseNames[number]

export const CompareConfig = Config.all({
  base: BenchConfig,
  /** The backlog every system drains. */
  events: positive("BENCH_EVENTS", 200_000),
  /** Offered rates of the latency runs, events/s. */
  rates: Config.string("BENCH_RATES").pipe(
    Config.withDefault("1000,5000"),
    Config.mapOrFail((text) => {
      const rates = text.split(",").map((part) => Number(part.trim()))
      return rates.every((n) => Number.isInteger(n) && n > 0)
        ? Either.right(rates)
        : Either.left(ConfigError.InvalidData(["BENCH_RATES"], `expected "1000,5000", got ${text}`))
    })
  ),
  /** Length of each latency run, seconds. */
  seconds: positive("BENCH_SECONDS", 10),
  recordBytes: positive("BENCH_RECORD_BYTES", 250),
  /** Round trips of Kafka's EndToEndLatency (one record at a time). */
  endToEndMessages: positive("BENCH_E2E_MESSAGES", 2_000),
  /**
   * Debezium's `poll.interval.ms`: how long its task sleeps when it finds nothing to send. Its
   * default (500) would put half a second into every quiet moment; ours wakes on notifications.
   */
  debeziumPollMs: positive("BENCH_DEBEZIUM_POLL_MS", 10),
  /**
   * The relay's `OUTBOX_RETENTION`. Zero (the default here) deletes each row in the claim that
   * publishes it, as Debezium's outbox pattern deletes the row right after inserting it; the library's
   * default keeps published rows a day, which costs the relay an update per row.
   */
  relayRetention: Config.string("BENCH_RELAY_RETENTION").pipe(Config.withDefault("0 seconds")),
  /** Which systems run (all by default), e.g. `kpipe` alone while working on the relay. */
  phases: Config.string("BENCH_PHASES").pipe(
    Config.withDefault(phaseNames.join(",")),
    Config.mapOrFail((text) => {
      const phases = text.split(",").map((part) => part.trim())
      return phases.every((p): p is Phase => (phaseNames as ReadonlyArray<string>).includes(p))
        ? Either.right(new Set<Phase>(phases as Array<Phase>))
        : Either.left(ConfigError.InvalidData(["BENCH_PHASES"], `expected some of ${phaseNames.join(",")}`))
    })
  ),
  /** Node flags for the relay and consumer processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/profiles`. */
  processArgs: Config.string("BENCH_PROCESS_ARGS").pipe(
    Config.withDefault(""),
    Config.map((text) => text.split(" ").filter((arg) => arg !== ""))
  ),
  /** Where the report and the chart go. */
  resultsDir: Config.string("BENCH_RESULTS_DIR").pipe(Config.withDefault("bench-results/compare"))
}).pipe(Config.map(({ base, ...rest }) => ({ ...rest, base: { ...base, events: rest.events } })))
export type CompareConfig = Config.Config.Success<typeof CompareConfig>

/** Transactions of the backlog, like the pipeline bench's drain run. */
export const backlogTxSize = appendTxSize.drain

/** Events per transaction and transactions of one latency run: one transaction every `latencyTickMs`. */
export const latencyShape = (rate: number, seconds: number) => {
  const perTick = Math.max(1, Math.round((rate * latencyTickMs) / 1000))
  const ticks = Math.max(1, Math.round((seconds * 1000) / latencyTickMs))
  return { perTick, ticks, total: perTick * ticks }
}

const encode = Schema.encodeSync(BenchEvent)

/**
 * jsonb prints `": "` and `", "` between members, so a stored payload is longer than
 * `JSON.stringify`'s (no string of a BenchEvent holds a `:` or `,`).
 */
const jsonbLength = (event: BenchEvent) => {
  const text = JSON.stringify(encode(event))
  return Buffer.byteLength(text) + (text.match(/[:,]/g)?.length ?? 0)
}

/** The note that makes an event's payload `recordBytes` long. */
export const noteFor = (recordBytes: number) => {
  const [probe] = makeEvents(1, { keys: 100_000, keysPerTransaction: 1 }, "")
  return "x".repeat(Math.max(0, recordBytes - jsonbLength(probe!)))
}

export const makeWorkloadEvents = (count: number, config: CompareConfig, note: string) =>
  makeEvents(count, config.base, note)

/** The payload exactly as kpipe's outbox stores it, for the peer's outbox table. */
export const payloadOf = (event: BenchEvent) => encode(event)

/** The event id inside a record's value (both systems publish the payload as it is). */
export const eventIdOf = (value: Buffer | null) => {
  if (value === null) return undefined
  const parsed: unknown = JSON.parse(value.toString("utf8"))
  return typeof parsed === "object" && parsed !== null && "eventId" in parsed && typeof parsed.eventId === "string"
    ? parsed.eventId
    : undefined
}

/** Chunks of a backlog of `total` events, `txSize` per transaction. */
export const chunks = (total: number, txSize: number) =>
  Array.from({ length: Math.ceil(total / txSize) }, (_, i) => Math.min(txSize, total - i * txSize))

export const describe = (config: CompareConfig) =>
  `${
    BenchReport.fmt(config.events)
  } events backlog (transactions of ${backlogTxSize}, ${config.base.appenders} appenders); ${
    config.rates.map((r) => BenchReport.fmt(r)).join(" and ")
  } events/s offered for ${config.seconds} s each (a transaction every ${latencyTickMs} ms); payload ~${config.recordBytes} bytes; ${
    BenchReport.fmt(config.base.keys)
  } keys, ${config.base.keysPerTransaction} per transaction; ${config.base.partitions} partitions`

/** Record timestamps are the broker's append time: "on the topic" measured by the broker itself. */
export const topicConfig = { "retention.ms": String(60 * 60 * 1000), "message.timestamp.type": "LogAppendTime" }

/** A topic of `partitions` without the dead-letter topic a kpipe topic has; deleted at the end of the run. */
export const createTopic = (name: string, partitions: number, created: Array<string>) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.createTopics([{ name, partitions, config: topicConfig }])).pipe(
    Effect.tap((names) => Effect.sync(() => created.push(...names))),
    Effect.as(name)
  )

/**
 * One appending transaction: `append` writes the events, and the transaction's id is read so that
 * its commit time can be asked from the server afterwards (`commitTimes`).
 */
const appendTx = <E, R>(
  append: (events: ReadonlyArray<BenchEvent>) => Effect.Effect<unknown, E, R>,
  events: ReadonlyArray<BenchEvent>
) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.withTransaction(
      Effect.zipRight(append(events), sql<{ xid: string }>`SELECT (txid_current() % 4294967296)::text AS xid`)
    )).pipe(Effect.map(([row]) => row!.xid))

/**
 * When each transaction committed, by the server's clock (`track_commit_timestamp` is on in the
 * bench's cluster): the same host clock as the broker's append time, and immune to how late the
 * busy bench process hears of the commit.
 */
const commitTimes = (xids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ xid: string; at: number }>`
      SELECT x AS xid, (extract(epoch FROM pg_xact_commit_timestamp(x::xid)) * 1000)::float8 AS at
      FROM unnest(${xids}::text[]) AS x`).pipe(Effect.map((rows) => new Map(rows.map((row) => [row.xid, row.at]))))

/** `total` events in transactions of `backlogTxSize`, `appenders` transactions at a time. */
export const appendBacklog = <E, R>(
  config: CompareConfig,
  note: string,
  append: (events: ReadonlyArray<BenchEvent>) => Effect.Effect<unknown, E, R>,
  appended: Array<string>
) =>
  Effect.forEach(
    chunks(config.events, backlogTxSize),
    (size) =>
      Effect.suspend(() => {
        const events = makeWorkloadEvents(size, config, note)
        return Effect.zipRight(
          appendTx(append, events),
          Effect.sync(() => events.forEach((e) => appended.push(e.eventId)))
        )
      }),
    { concurrency: config.base.appenders, discard: true }
  )

/** One latency run: `perTick` events per transaction on the open loop; when each committed, by id. */
export const offerAtRate = <E, R>(
  config: CompareConfig,
  rate: number,
  note: string,
  append: (events: ReadonlyArray<BenchEvent>) => Effect.Effect<unknown, E, R>
) =>
  Effect.gen(function*() {
    const { perTick, ticks, total } = latencyShape(rate, config.seconds)
    const transactionOf = new Map<string, string>()
    const offerMs = yield* offerOpenLoop(
      ticks,
      Effect.suspend(() => {
        const events = makeWorkloadEvents(perTick, config, note)
        return Effect.map(appendTx(append, events), (xid) => events.forEach((e) => transactionOf.set(e.eventId, xid)))
      })
    )
    const committed = yield* commitTimes([...new Set(transactionOf.values())])
    const committedAt = new Map([...transactionOf].map(([id, xid]) => [id, committed.get(xid) ?? Number.NaN]))
    return { committedAt, offerMs, total }
  })
