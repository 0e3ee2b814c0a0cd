import { Redis } from "@kpipe/redis"
import { Health, HttpServe, Operations, OpsServer, ServiceMain } from "@kpipe/service-kit"
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
  ServiceMain.kafka,
  ServiceMain.alerts
).pipe(Layer.provideMerge(Config.layerFromEnv))

const HttpLive = Layer.unwrapEffect(Effect.map(Config.Config, (config) =>
  HttpServe.layer({
    defaultPort: EffectConfig.succeed(config.port),
    logRequests: false,
    fastRoutes: Effect.map(Http.fastRoute, (route) => [route])
  }))).pipe(Layer.provide(App.api))

// A consumer-only process still answers probes and scrapes on PORT.
const OpsHttpLive = Layer.unwrapEffect(
  Effect.map(Config.Config, (config) => HttpServe.layerOperations({ defaultPort: EffectConfig.succeed(config.port) }))
)

/** `COUPON_ROLES`: the API (served), the consumers, or both; the topics created first either way. */
const AppLive = Layer.unwrapEffect(Effect.map(Config.Config, ({ roles }) =>
  Layer.mergeAll(
    roles.api ? HttpLive : OpsHttpLive,
    roles.consumer ? App.consumer : Layer.empty
  ))).pipe(
    Layer.provide(Topics.layer),
    Layer.provide(
      Health.layerCheck("redis", Redis.Redis.pipe(Effect.flatMap((redis) => redis.use((client) => client.ping()))))
    ),
    Layer.provide(Operations.layer("coupon-service"))
  )

ServiceMain.launch("coupon-service", Layer.merge(AppLive, OpsServer.layerFromEnv).pipe(Layer.provide(InfraLive)))
