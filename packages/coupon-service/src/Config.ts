import { RetryPolicy } from "@kpipe/pipeline"
import { AdminToken, ConsumerSettings, Replica, ServiceConfig, ServiceTopics } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Topics from "./Topics.ts"

export const basePort = 3020

/** S4's consumer: up to 3 attempts (1 s, then 2 s, ±10 %), then the dead-letter topic. */
export const seedRetry: RetryPolicy.RetryPolicy = RetryPolicy.make({
  initialDelay: "1 second",
  factor: 2,
  maxDelay: "4 seconds",
  maxRetries: 2,
  jitter: 0.1
})

const positive = (name: string, fallback: number, description: string) =>
  EffectConfig.integer(name).pipe(
    EffectConfig.withDefault(fallback),
    EffectConfig.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    EffectConfig.withDescription(description)
  )

const duration = (name: string, fallback: Duration.DurationInput, description: string) =>
  EffectConfig.duration(name).pipe(
    EffectConfig.withDefault(Duration.decode(fallback)),
    EffectConfig.withDescription(description)
  )

const roles = EffectConfig.string("COUPON_ROLES").pipe(
  EffectConfig.withDefault("api,consumer"),
  EffectConfig.mapOrFail((text) => {
    const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "")
    const unknown = names.filter((name) => name !== "api" && name !== "consumer")
    return unknown.length > 0 || names.length === 0
      ? Either.left(ConfigError.InvalidData([], `COUPON_ROLES must list api and/or consumer, got "${text}"`))
      : Either.right({ api: names.includes("api"), consumer: names.includes("consumer") })
  }),
  EffectConfig.withDescription(
    "What this process runs: api (HTTP, reservations, publisher) and/or consumer (the consumer groups)"
  )
)

// The commands concurrent requests issue in one tick go out in one write, instead of one system call each.
const redisUrl = EffectConfig.redacted("REDIS_URL").pipe(
  EffectConfig.withDefault(Redacted.make("redis://127.0.0.1:6379")),
  EffectConfig.map((url) => {
    const text = Redacted.value(url)
    return text.includes("enableAutoPipelining")
      ? url
      : Redacted.make(`${text}${text.includes("?") ? "&" : "?"}enableAutoPipelining=true`)
  }),
  EffectConfig.withDescription("Redis of the stock reservations (ioredis auto-pipelining switched on)")
)

const retry = EffectConfig.all({
  initialDelay: duration("CONSUMER_RETRY_INITIAL_DELAY", seedRetry.initialDelay, "First retry delay of the consumer"),
  maxRetries: EffectConfig.integer("CONSUMER_MAX_RETRIES").pipe(
    EffectConfig.withDefault(seedRetry.maxRetries),
    EffectConfig.withDescription("Retries of a failing request before it is dead-lettered")
  )
}).pipe(
  EffectConfig.map(({ initialDelay, maxRetries }) =>
    RetryPolicy.make({
      initialDelay,
      maxRetries,
      factor: seedRetry.factor,
      maxDelay: Duration.max(seedRetry.maxDelay, initialDelay),
      jitter: seedRetry.jitter
    })
  )
)

// kafkajs's default request timeout: `KafkaClient` sets a shorter one (3 s), so a reclaim age
// derived from this one leaves a wide margin.
const producerRequestTimeout = Duration.seconds(30)

/**
 * Everything coupon-service reads from the environment, with local defaults. The Kafka client reads
 * its own (`KAFKA_BROKERS` …), `HttpServe` reads `HTTP_REUSE_PORT`, `AlertSink` `ALERT_WEBHOOK_URL`.
 */
export const config = EffectConfig.all({
  replica: Replica.replica,
  port: ServiceConfig.port(Replica.port(basePort)),
  roles,
  databaseUrl: ServiceConfig.databaseUrl("kpipe_coupon_service"),
  redisUrl,
  topics: EffectConfig.map(ServiceTopics.prefix, (prefix) => Topics.named(prefix)),
  redisCommandTimeout: duration(
    "REDIS_COMMAND_TIMEOUT",
    Duration.seconds(2),
    "How long a Redis command waits for its reply before Redis counts as not answering (503, the status " +
      "query answers from the database); a connection silent that long with commands outstanding is opened again"
  ),
  keyPrefix: EffectConfig.string("REDIS_KEY_PREFIX").pipe(
    EffectConfig.withDefault("coupon:"),
    EffectConfig.withDescription("Every Redis key of the service starts with it")
  ),
  adminToken: AdminToken.config,
  statusTtl: duration("ISSUE_STATUS_TTL", Duration.hours(24), "How long a user's issue status stays in Redis"),
  publishMaxBatch: positive("PUBLISH_MAX_BATCH", 500, "Issue requests per producer request at most"),
  publishLanes: positive("PUBLISH_LANES", 1, "Producers sending issue requests side by side"),
  publishRetries: positive(
    "PUBLISH_RETRIES",
    3,
    "kafkajs's retries of one producer request before the request is rolled back"
  ),
  couponCacheTtl: duration(
    "COUPON_CACHE_TTL",
    Duration.seconds(30),
    "How long coupons are cached for the request path"
  ),
  recoveryTimeout: duration(
    "RECOVERY_TIMEOUT",
    Duration.seconds(20),
    "How long a rebuild waits for the API replicas' in-flight publishes and for the consumer group to catch up"
  ),
  replicaHeartbeat: duration(
    "REPLICA_HEARTBEAT",
    Duration.millis(500),
    "How often an API replica renews its registration in Redis and answers the rebuilds waiting for it"
  ),
  replicaLease: duration(
    "REPLICA_LEASE",
    Duration.seconds(3),
    "An API replica not heard of for this long counts as dead, and a rebuild stops waiting for its " +
      "publishes: longer than REPLICA_HEARTBEAT plus the longest pause a live process may take"
  ),
  reclaimInterval: duration(
    "RESERVATION_RECLAIM_INTERVAL",
    Duration.seconds(5),
    "How often the reclaimer looks for reservations whose request never reached Kafka"
  ),
  reclaimAge: EffectConfig.option(EffectConfig.duration("RESERVATION_RECLAIM_AGE")).pipe(
    EffectConfig.withDescription(
      "How old a pending reservation must be before the reclaimer may release it: longer than a publish " +
        "can take (default: twice PUBLISH_RETRIES + 1 producer requests of 30 s, one send queued ahead " +
        "plus its own). A request queued for half of it fails unsent (503), so none is published later"
    )
  ),
  consumerBatchSize: positive("CONSUMER_BATCH_SIZE", 200, "Records of a partition applied in one transaction"),
  consumerConcurrency: positive("CONSUMER_CONCURRENCY", 3, "Partitions consumed concurrently"),
  retry,
  // Measured in a sale: consumer CPU per request from ~140 to ~80 µs with bigger fetches.
  consumer: ConsumerSettings.config({ maxWaitTimeInMs: 100, minBytes: 64 * 1024 })
}).pipe(
  EffectConfig.map((values) => ({
    ...values,
    reclaimAge: Option.getOrElse(
      values.reclaimAge,
      () => Duration.times(producerRequestTimeout, 2 * (values.publishRetries + 1))
    )
  })),
  // A lease no longer than the heartbeat would let live replicas pass for dead between two heartbeats.
  EffectConfig.validate({
    message: "REPLICA_LEASE must be longer than REPLICA_HEARTBEAT",
    validation: (values) => Duration.greaterThan(values.replicaLease, values.replicaHeartbeat)
  })
)

export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/coupon-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv: Layer.Layer<Config, ConfigError.ConfigError> = Layer.effect(Config, config)
