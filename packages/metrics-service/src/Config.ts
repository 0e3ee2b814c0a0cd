import { RetryPolicy } from "@kpipe/pipeline"
import { AdminToken, ConsumerSettings, Replica } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"

export const basePort = 3050

/**
 * `COMMERCE_ADMIN_TOKEN`: commerce-service's `ADMIN_TOKEN`, the bearer token of the product totals
 * the reconciliation reads. Unset (or empty), the service's own `ADMIN_TOKEN`: `pnpm run services`
 * gives every service the same one.
 */
const commerceAdminToken = EffectConfig.option(EffectConfig.redacted("COMMERCE_ADMIN_TOKEN")).pipe(
  EffectConfig.map(Option.filter((token) => Redacted.value(token) !== "")),
  EffectConfig.withDescription(
    "commerce-service's ADMIN_TOKEN, sent as the bearer token of the reconciliation's reads of its product totals (default: ADMIN_TOKEN)"
  )
)

/** Everything metrics-service reads from the environment (the database and Kafka clients read their own). */
export const config = EffectConfig.all({
  port: Replica.port(basePort).pipe(EffectConfig.withDescription("HTTP port when PORT is unset: 3050 + REPLICA")),
  replica: Replica.replica,
  commerceUrl: EffectConfig.string("COMMERCE_SERVICE_URL").pipe(
    EffectConfig.withDefault("http://127.0.0.1:3040"),
    EffectConfig.withDescription("commerce-service's base URL: reconciliation reads its product totals")
  ),
  batchSize: EffectConfig.integer("CONSUMER_BATCH_SIZE").pipe(
    EffectConfig.validate({ message: "CONSUMER_BATCH_SIZE must be a positive integer", validation: (n) => n > 0 }),
    // A transaction's fixed costs (round trips, the counts of hot products updated once per
    // transaction) shrink per record as it grows; 10,000 takes a whole fetch of a partition.
    EffectConfig.withDefault(10_000),
    EffectConfig.withDescription("Records of a partition applied in one transaction, with one statement")
  ),
  fetchBytesPerPartition: EffectConfig.integer("KAFKA_MAX_BYTES_PER_PARTITION").pipe(
    EffectConfig.validate({
      message: "KAFKA_MAX_BYTES_PER_PARTITION must be a positive integer",
      validation: (n) => n > 0
    }),
    EffectConfig.withDefault(4 * 1024 * 1024),
    EffectConfig.withDescription("Most bytes a fetch brings per partition, hence the records of one batch")
  ),
  partitionsConcurrency: EffectConfig.integer("CONSUMER_PARTITIONS_CONCURRENCY").pipe(
    EffectConfig.validate({
      message: "CONSUMER_PARTITIONS_CONCURRENCY must be a positive integer",
      validation: (n) => n > 0
    }),
    EffectConfig.withDefault(1),
    EffectConfig.withDescription(
      "Partitions of a topic applied at once by one consumer (their transactions meet on hot products)"
    )
  ),
  adminToken: AdminToken.config,
  commerceAdminToken,
  reconciliationSettle: EffectConfig.duration("RECONCILIATION_SETTLE_TIMEOUT").pipe(
    EffectConfig.withDefault(Duration.seconds(10)),
    EffectConfig.withDescription(
      "Longest wait of a reconciliation that found drift for the consumers to catch up with their topics before it reads again"
    )
  ),
  maxRetries: EffectConfig.integer("CONSUMER_MAX_RETRIES").pipe(
    EffectConfig.withDefault(3),
    EffectConfig.withDescription("Retries of a failing record (1 s, 2 s, 4 s) before it is dead-lettered")
  ),
  kafka: ConsumerSettings.config({ maxWaitTimeInMs: 100 })
}).pipe(
  EffectConfig.map(({ commerceAdminToken, ...values }) => ({
    ...values,
    commerceAdminToken: Option.getOrElse(commerceAdminToken, () => values.adminToken)
  }))
)

/** The configuration, as a service: `layerFromEnv` reads it, `layer` gives it (tests, the benchmark). */
export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/metrics-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv: Layer.Layer<Config, ConfigError.ConfigError> = Layer.effect(Config, config)

/** The consumers' retries: the seed's 1 s, 2 s, 4 s (±10 %), as many as `maxRetries`. */
export const retryPolicy = (maxRetries: number): RetryPolicy.RetryPolicy =>
  RetryPolicy.make({ initialDelay: "1 second", factor: 2, maxDelay: "4 seconds", maxRetries, jitter: 0.1 })
