import { TopicAdmin } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { ConsumerProgress } from "./ConsumerProgress.ts"
import { CouponConfig } from "./CouponConfig.ts"
import { ApiLive } from "./CouponHttp.ts"
import { CouponIssuer } from "./CouponIssuer.ts"
import { CouponStore } from "./CouponStore.ts"
import * as DeadLetters from "./DeadLetters.ts"
import * as IssueConsumer from "./IssueConsumer.ts"
import { IssueGate } from "./IssueGate.ts"
import { IssuePublisher } from "./IssuePublisher.ts"
import { IssueRecovery } from "./IssueRecovery.ts"
import { Reconciliation } from "./Reconciliation.ts"

/**
 * `REDIS_URL` (default `redis://127.0.0.1:6379`) with ioredis's auto-pipelining: the commands that
 * concurrent requests issue in one tick go out in one write, instead of one system call each.
 */
export const RedisLive = Redis.layerConfig({
  url: Config.redacted("REDIS_URL").pipe(
    Config.withDefault(Redacted.make("redis://127.0.0.1:6379")),
    Config.map((url) => {
      const text = Redacted.value(url)
      return text.includes("enableAutoPipelining")
        ? url
        : Redacted.make(`${text}${text.includes("?") ? "&" : "?"}enableAutoPipelining=true`)
    })
  )
})

/** The database and Redis sides of a sale. */
export const StoresLive = Layer.mergeAll(CouponStore.Default, IssueGate.Default)

/** The request path: issuer (gate + publisher + recovery) and the reconciliation check. */
export const RequestsLive = Layer.mergeAll(CouponIssuer.Default, Reconciliation.Default).pipe(
  Layer.provideMerge(
    Layer.mergeAll(IssuePublisher.Default, IssueRecovery.Default.pipe(Layer.provide(ConsumerProgress.Default)))
  ),
  Layer.provideMerge(StoresLive)
)

/** The consumers: `coupon-issue-group`, and the two groups on `coupon-issue-dlq`. */
export const ConsumersLive = Layer.mergeAll(IssueConsumer.layer, DeadLetters.layer).pipe(Layer.provide(StoresLive))

/** Creates the requests topic and its dead-letter topic (with `TOPIC_PREFIX`) when missing. */
export const TopicsLive = Layer.unwrapEffect(
  Effect.map(CouponConfig, (config) => TopicAdmin.layerCreate([config.topic]))
)

/**
 * `COUPON_ROLES` (default `api,consumer`): what this process runs. `api` is the request path and its
 * HttpApi handlers, `consumer` the consumer groups; splitting them lets a sale's API processes spend
 * their event loop on requests while other processes apply them.
 */
export const roles = Config.string("COUPON_ROLES").pipe(
  Config.withDefault("api,consumer"),
  Config.mapOrFail((text) => {
    const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "")
    const unknown = names.filter((name) => name !== "api" && name !== "consumer")
    return unknown.length > 0 || names.length === 0
      ? Either.left(ConfigError.InvalidData([], `COUPON_ROLES must list api and/or consumer, got "${text}"`))
      : Either.right({ api: names.includes("api"), consumer: names.includes("consumer") })
  })
)

/** The API's handlers (`HttpApi.Api`) and the request path, configured from the environment. */
export const apiLayer = ApiLive.pipe(
  Layer.provideMerge(RequestsLive),
  Layer.provide(TopicsLive),
  Layer.provideMerge(CouponConfig.Default)
)

/** The consumer groups, configured from the environment. */
export const consumerLayer = ConsumersLive.pipe(Layer.provide(TopicsLive), Layer.provideMerge(CouponConfig.Default))

/**
 * The whole service but the HTTP server: the API's handlers (`HttpApi.Api`), the request path and
 * the consumers, configured from the environment. Needs `SqlClient` (migrated with
 * `Migrations.all`), `Redis`, `KafkaClient`, `Admin` and an `AlertSink`.
 */
export const layer = Layer.mergeAll(apiLayer, consumerLayer)
