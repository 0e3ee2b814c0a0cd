import { SeedTopics } from "@kpipe/contracts"
import { RetryPolicy } from "@kpipe/pipeline"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

/** What `ADMIN_TOKEN` is when unset: good for a laptop, never for a deployment. */
export const localAdminToken = "local-admin-token"

const positive = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

/** S4's consumer: up to 3 attempts (1 s, then 2 s, ±10 %), then the dead-letter topic. */
export const seedRetry: RetryPolicy.RetryPolicy = RetryPolicy.make({
  initialDelay: "1 second",
  factor: 2,
  maxDelay: "4 seconds",
  maxRetries: 2,
  jitter: 0.1
})

/** Everything the service reads from the environment, with local defaults. */
export class CouponConfig extends Effect.Service<CouponConfig>()("@kpipe/coupon-service/CouponConfig", {
  effect: Effect.gen(function*() {
    return {
      /** The requests topic (and its `coupon-issue-dlq`), with `TOPIC_PREFIX`. */
      topic: yield* ServiceTopics.resolve(SeedTopics.couponIssueRequests),
      issueGroup: yield* ServiceTopics.group("coupon-issue-group"),
      dlqMonitorGroup: yield* ServiceTopics.group("coupon-issue-dlq-monitor-group"),
      dlqReleaseGroup: yield* ServiceTopics.group("coupon-issue-dlq-release-group"),
      /** Every Redis key of the service starts with it (`REDIS_KEY_PREFIX`, default `coupon:` as in the seed). */
      keyPrefix: yield* Config.string("REDIS_KEY_PREFIX").pipe(Config.withDefault("coupon:")),
      adminToken: yield* Config.redacted("ADMIN_TOKEN").pipe(Config.withDefault(Redacted.make(localAdminToken))),
      /** How long a user's PENDING / ISSUED / FAILED status stays in Redis (`ISSUE_STATUS_TTL`, 24 h). */
      statusTtl: yield* Config.duration("ISSUE_STATUS_TTL").pipe(Config.withDefault(Duration.hours(24))),
      /** Messages per producer request at most (`PUBLISH_MAX_BATCH`, 500). */
      publishMaxBatch: yield* positive("PUBLISH_MAX_BATCH", 500),
      publishLanes: yield* positive("PUBLISH_LANES", 1),
      /** kafkajs's retries of one producer request before the request is rolled back (`PUBLISH_RETRIES`, 3). */
      publishRetries: yield* positive("PUBLISH_RETRIES", 3),
      /** How long coupons are cached for the request path (`COUPON_CACHE_TTL`, 30 s). */
      couponCacheTtl: yield* Config.duration("COUPON_CACHE_TTL").pipe(Config.withDefault(Duration.seconds(30))),
      /** Time given to other replicas' in-flight publishes before a rebuild snapshots Kafka (`RECOVERY_GRACE`, 1 s). */
      recoveryGrace: yield* Config.duration("RECOVERY_GRACE").pipe(Config.withDefault(Duration.seconds(1))),
      /** How long a rebuild waits for the consumer group to catch up (`RECOVERY_TIMEOUT`, 20 s). */
      recoveryTimeout: yield* Config.duration("RECOVERY_TIMEOUT").pipe(Config.withDefault(Duration.seconds(20))),
      consumerBatchSize: yield* positive("CONSUMER_BATCH_SIZE", 200),
      consumerConcurrency: yield* positive("CONSUMER_CONCURRENCY", 3),
      /** `CONSUMER_RETRY_INITIAL_DELAY` / `CONSUMER_MAX_RETRIES` override the seed's 1 s × 2 retries. */
      retry: yield* Config.all({
        initialDelay: Config.duration("CONSUMER_RETRY_INITIAL_DELAY").pipe(Config.withDefault(seedRetry.initialDelay)),
        maxRetries: Config.integer("CONSUMER_MAX_RETRIES").pipe(Config.withDefault(seedRetry.maxRetries))
      }).pipe(
        Config.map(({ initialDelay, maxRetries }) =>
          RetryPolicy.make({
            initialDelay,
            maxRetries,
            factor: seedRetry.factor,
            maxDelay: Duration.max(seedRetry.maxDelay, initialDelay),
            jitter: seedRetry.jitter
          })
        )
      ),
      /** Consumer timings (`KAFKA_SESSION_TIMEOUT_MS` …), short enough for a quick failover. */
      kafka: yield* Config.all({
        sessionTimeout: Config.integer("KAFKA_SESSION_TIMEOUT_MS").pipe(Config.withDefault(10_000)),
        heartbeatInterval: Config.integer("KAFKA_HEARTBEAT_INTERVAL_MS").pipe(Config.withDefault(1_000)),
        rebalanceTimeout: Config.integer("KAFKA_REBALANCE_TIMEOUT_MS").pipe(Config.withDefault(20_000)),
        maxWaitTimeInMs: Config.integer("KAFKA_MAX_WAIT_MS").pipe(Config.withDefault(100)),
        // Measured in a sale: consumer CPU per request from ~140 to ~80 µs, the API's share grows.
        minBytes: positive("KAFKA_MIN_BYTES", 64 * 1024)
      })
    }
  })
}) {}
