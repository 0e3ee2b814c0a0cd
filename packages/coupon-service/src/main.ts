import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { HttpServe, Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { IssueFastRoute } from "./CouponHttp.ts"
import * as CouponService from "./CouponService.ts"
import * as CouponMigrations from "./Migrations.ts"

const basePort = 3020

/** `REPLICA` (default 0) picks the default port (3020 + REPLICA) and tags the logs. */
const replica = Config.integer("REPLICA").pipe(
  Config.validate({ message: "REPLICA must be a non-negative integer", validation: (n) => n >= 0 }),
  Config.withDefault(0)
)

const HttpLive = HttpServe.layer({
  defaultPort: Config.map(replica, (replica) => basePort + replica),
  logRequests: false,
  fastRoutes: Effect.map(IssueFastRoute, (route) => [route])
})

const InfraLive = Layer.mergeAll(
  CouponMigrations.databaseLayer,
  CouponService.RedisLive,
  Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
  AlertSink.layerConfig.pipe(Layer.provide(NodeHttpClient.layerUndici))
)

const AppLive = Layer.unwrapEffect(Effect.map(CouponService.roles, (roles) =>
  Layer.mergeAll(
    roles.api ? HttpLive.pipe(Layer.provide(CouponService.apiLayer)) : Layer.empty,
    roles.consumer ? CouponService.consumerLayer : Layer.empty
  ))).pipe(Layer.provide(InfraLive))

const MainLive = Layer.unwrapEffect(
  Effect.map(replica, (replica) =>
    Layer.effectDiscard(Effect.logInfo("coupon-service ready")).pipe(
      Layer.provide(AppLive),
      Layer.provide(Telemetry.layer("coupon-service")),
      Layer.annotateLogs({ service: "coupon-service", replica })
    ))
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
