import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import { Health, HttpServe, Operations, Telemetry } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import * as Config from "./Config.ts"
import * as Database from "./Database.ts"
import * as Http from "./Http.ts"
import * as StockReservations from "./StockReservations.ts"
import * as Topics from "./Topics.ts"

const InfraLive = Layer.mergeAll(
  Database.layer,
  StockReservations.layerRedis,
  Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
  AlertSink.layerConfig.pipe(Layer.provide(NodeHttpClient.layerUndici))
).pipe(Layer.provideMerge(Config.layerFromEnv))

const HttpLive = Layer.unwrapEffect(Effect.map(Config.Config, (config) =>
  HttpServe.layer({
    defaultPort: EffectConfig.succeed(config.port),
    logRequests: false,
    fastRoutes: Effect.map(Http.fastRoute, (route) => [route])
  }))).pipe(Layer.provide(App.api))

/** `COUPON_ROLES`: the API (served), the consumers, or both; the topics created first either way. */
const AppLive = Layer.unwrapEffect(Effect.map(Config.Config, ({ roles }) =>
  Layer.mergeAll(
    roles.api ? HttpLive : Layer.empty,
    roles.consumer ? App.consumer : Layer.empty
  ))).pipe(
    Layer.provide(Topics.layer),
    Layer.provide(
      Health.layerCheck("redis", Redis.Redis.pipe(Effect.flatMap((redis) => redis.use((client) => client.ping()))))
    ),
    Layer.provide(Operations.layer("coupon-service"))
  )

const MainLive = Layer.unwrapEffect(
  Effect.map(Config.Config, ({ replica }) =>
    Layer.effectDiscard(Effect.logInfo("coupon-service ready")).pipe(
      Layer.provide(AppLive),
      Layer.provide(Telemetry.layer("coupon-service")),
      Layer.annotateLogs({ service: "coupon-service", replica })
    ))
).pipe(Layer.provide(InfraLive))

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
