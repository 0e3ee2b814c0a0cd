import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { OutboxRelay } from "../../src/index.ts"

export interface RelayVariant {
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

export const BenchConfig = Config.all({
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
  /**
   * Partitions whose batches of one fetch the consumer applies together (one transaction): all six.
   * 2026-12-04, interleaved at 1,000/s with 6: transactions 2,461-2,831 → 720-826 a run, the
   * consumer's CPU per 1,000 events 520-532 → 439-441 ms, commit → applied p99 84-125 → 63-76 ms.
   */
  partitionsConsumedConcurrently: positive("BENCH_CONSUMER_CONCURRENCY", 6),
  /** Relay settings tried one after the other in the drain run. */
  drainVariants: relayVariants("BENCH_RELAY", "1x1000,2x1000,2x2000"),
  /**
   * Relay settings of the end-to-end and latency runs: two claim loops, as commerce-service deploys
   * its relay. On 2026-12-01 a second loop had drained no faster in `pnpm bench:compare` (32,082 /
   * 29,722 events/s against 32,170 / 24,984) and doubled the tail at 1,000/s (commit → on the topic
   * p99 41-53 ms against 25-27 ms). On 2026-12-04, interleaved (2, 1, 1, 2 loops): drained 30,021,
   * 29,595, 24,991, 29,377 events/s; p99 at 1,000/s 9.6, 13, 17, 17 ms; → applied p99 54, 57, 65,
   * 47 ms; and in two full runs that day 33,985 events/s with two loops against 25,540 with one.
   */
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
export type BenchConfig = Config.Config.Success<typeof BenchConfig>

export const pipelineRelayOptions = (config: BenchConfig): OutboxRelay.RelayOptions => ({
  ...config.pipelineRelay,
  shardsPerClaim: Option.getOrUndefined(config.shardsPerClaim)
})

/** The pool is sized for the benchmark's concurrency; `PG_MAX_CONNECTIONS` in the environment still wins. */
const benchDefaults = new Map([["PG_MAX_CONNECTIONS", "20"], ["PG_APPLICATION_NAME", "kpipe-bench"]])
export const configProvider = ConfigProvider.fromEnv().pipe(
  ConfigProvider.orElse(() => ConfigProvider.fromMap(benchDefaults))
)

export const appendTxSize = { drain: 100, pipeline: 50 } as const
export const latencyTickMs = 10
