import type { PgClient } from "@effect/sql-pg/PgClient"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Producer } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import { IllegalArgumentException } from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as metrics from "./internal/metrics.ts"
import * as admin from "./internal/relayAdmin.ts"
import * as claim from "./internal/relayClaim.ts"
import * as loop from "./internal/relayLoop.ts"

export interface RelayOptions {
  /** Most rows published by one claim (default 1000). */
  readonly batchSize?: number | undefined
  /**
   * Most bytes of keys, values and headers one claim sends (default 900,000). Kafka refuses a
   * record batch over its `max.message.bytes` (1 MB by default), and the relay would then send the
   * claim's rows one at a time. A claim always takes its first row, however large. `Infinity`: no limit.
   */
  readonly maxBatchBytes?: number | undefined
  /** Most key shards one claim locks (default 16). */
  readonly shardsPerClaim?: number | undefined
  /** Loops in this instance; each claims other shards (default 1). */
  readonly concurrency?: number | undefined
  /** Fallback when a commit notification is missed (default 1 s). */
  readonly pollInterval?: Duration.DurationInput | undefined
  /**
   * How long published and skipped rows are kept (default 1 day). Zero deletes a row in the claim
   * that publishes it: the fastest relay, with no record of what was published in the table.
   */
  readonly retention?: Duration.DurationInput | undefined
  readonly cleanupInterval?: Duration.DurationInput | undefined
}

export const defaultRetention: Duration.Duration = Duration.days(1)

export interface OutboxStats {
  readonly pending: number
  readonly failed: number
  readonly oldestPendingAge: Option.Option<Duration.Duration>
}

export type RoundResult =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Published"; readonly count: number }
  | { readonly _tag: "Blocked"; readonly error: KafkaError | SqlError }

/** Where a relay stands: claiming, backing off after a claim that could not publish, or gone. */
export type RelayState = "running" | "backingOff" | "stopped"

/**
 * Told how the relays in its context fare, e.g. by a service's readiness check; optional (a relay
 * runs the same without one).
 */
export class Observer extends Context.Tag("@kpipe/pipeline/OutboxRelay/Observer")<Observer, {
  readonly relay: (state: RelayState, detail?: string) => void
}>() {}

/** What waits to be published, per topic. */
export interface TopicBacklog {
  readonly topic: string
  readonly pending: number
  readonly oldestPendingAge: Duration.Duration
}

export const backlogByTopic: Effect.Effect<ReadonlyArray<TopicBacklog>, SqlError, SqlClient> = admin.backlogByTopic

export const publishedTotal = metrics.publishedTotal
export const failedTotal = metrics.failedTotal
export const backlog = metrics.backlog
export const oldestPendingSeconds = metrics.oldestPendingSeconds
export const claimFailuresTotal = metrics.claimFailuresTotal

/**
 * `run`, `drain` and `publishOnce` with `options` checked. A programming error, not an outage: with
 * 0 of any of these the relay would publish nothing, silently. `maxBatchBytes` may be `Infinity`.
 */
const validated = <A, E, R>(
  options: RelayOptions,
  use: (options: RelayOptions) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const invalid = (["batchSize", "maxBatchBytes", "shardsPerClaim", "concurrency"] as const).filter((name) => {
      const value = options[name]
      if (value === undefined || (name === "maxBatchBytes" && value === Infinity)) return false
      return !(Number.isInteger(value) && value > 0)
    })
    return invalid.length === 0 ? use(options) : Effect.die(
      new IllegalArgumentException(
        `OutboxRelay options must be whole numbers above 0: ${
          invalid.map((name) => `${name} = ${options[name]}`).join(", ")
        }`
      )
    )
  })

/**
 * One claim: lock up to `shardsPerClaim` shards that have pending rows (skipping shards another
 * relay holds), publish their next rows in key order with one producer call, mark them published
 * with one statement, commit. Returns what happened, for the loop's pacing.
 */
export const publishOnce = (
  options: RelayOptions = {}
): Effect.Effect<RoundResult, SqlError, SqlClient | Producer.Producer> => validated(options, claim.publishOnce)

/**
 * Claims until nothing is left to publish; returns how many rows it published. Fails with the
 * claim's error when one could not publish (the broker away): its rows stay pending.
 */
export const drain = (
  options: RelayOptions = {}
): Effect.Effect<number, SqlError | KafkaError, SqlClient | Producer.Producer> => validated(options, admin.drain)

export const stats: Effect.Effect<OutboxStats, SqlError, SqlClient> = admin.stats

/** Sends a FAILED row again (after the cause was fixed); its key resumes behind it. */
export const retryFailed: (id: string) => Effect.Effect<boolean, SqlError, SqlClient> = admin.retryFailed

/** Gives up on a FAILED row for good; its key resumes with the next row. */
export const skipFailed: (id: string) => Effect.Effect<boolean, SqlError, SqlClient> = admin.skipFailed

/** Deletes published and skipped rows older than `retention`, a bounded chunk per statement. */
export const cleanup: (retention: Duration.DurationInput) => Effect.Effect<number, SqlError, SqlClient> = admin.cleanup

/** Deletes the sequence counters of keys with no row left in the outbox; returns how many. */
export const cleanupKeys: Effect.Effect<number, SqlError, SqlClient> = admin.cleanupKeys

/**
 * Runs the relay until the scope closes: `concurrency` claim loops that wake on commit
 * notifications (`pg_notify`) and poll as a fallback, backing off while a claim cannot publish,
 * plus periodic stats and cleanup.
 */
export const run = (
  options: RelayOptions = {}
): Effect.Effect<void, never, SqlClient | PgClient | Producer.Producer | Scope.Scope> => validated(options, loop.run)

export const layer = (
  options: RelayOptions = {}
): Layer.Layer<never, never, SqlClient | PgClient | Producer.Producer> => Layer.scopedDiscard(run(options))

const positiveInteger = (name: string, description: string) =>
  Config.option(
    Config.integer(name).pipe(
      Config.validate({ message: "must be a whole number above 0", validation: (n) => n > 0 }),
      Config.withDescription(description)
    )
  )

/**
 * `OUTBOX_BATCH_SIZE`, `OUTBOX_MAX_BATCH_BYTES`, `OUTBOX_CONCURRENCY`, `OUTBOX_POLL_INTERVAL`,
 * `OUTBOX_RETENTION` (all optional).
 */
export const layerConfig: Layer.Layer<never, ConfigError.ConfigError, SqlClient | PgClient | Producer.Producer> = Layer
  .unwrapEffect(
    Effect.map(
      Config.all({
        batchSize: positiveInteger("OUTBOX_BATCH_SIZE", "Most rows one claim publishes (1000)"),
        maxBatchBytes: positiveInteger(
          "OUTBOX_MAX_BATCH_BYTES",
          "Most bytes of keys, values and headers one claim publishes (900000; the broker refuses a record batch over its max.message.bytes)"
        ),
        concurrency: positiveInteger("OUTBOX_CONCURRENCY", "Claim loops in this process (1)"),
        pollInterval: Config.option(
          Config.duration("OUTBOX_POLL_INTERVAL").pipe(
            Config.withDescription("How often the relay polls when it hears no commit notification (1 s)")
          )
        ),
        retention: Config.option(
          Config.duration("OUTBOX_RETENTION").pipe(
            Config.withDescription("How long published and skipped rows are kept (1 day; 0 deletes them on publish)")
          )
        )
      }),
      (config) =>
        layer({
          batchSize: Option.getOrUndefined(config.batchSize),
          maxBatchBytes: Option.getOrUndefined(config.maxBatchBytes),
          concurrency: Option.getOrUndefined(config.concurrency),
          pollInterval: Option.getOrUndefined(config.pollInterval),
          retention: Option.getOrUndefined(config.retention)
        })
    )
  )
