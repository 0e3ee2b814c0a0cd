import { HttpServe, Operations, OpsServer, ServiceMain } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import * as Config from "./Config.ts"
import * as Database from "./Database.ts"
import * as Http from "./Http.ts"

const InfraLive = Layer.mergeAll(Database.layer, ServiceMain.kafka, ServiceMain.alerts).pipe(
  Layer.provideMerge(Config.layerFromEnv)
)

// No log line per request: at the rates an order API takes it costs more than the request.
const HttpLive = HttpServe.layer({
  defaultPort: EffectConfig.map(Config.config, (config) => config.port),
  logRequests: false,
  fastRoutes: Effect.map(Http.fastRoute, (route) => [route])
}).pipe(Layer.provide(App.api))

// A workers-only process still answers probes and scrapes on PORT.
const OpsHttpLive = HttpServe.layerOperations({ defaultPort: EffectConfig.map(Config.config, (config) => config.port) })

/** `ORDER_ROLES`: the API (served) and the workers this process runs; all of them by default. */
const AppLive = Layer.unwrapEffect(Effect.map(Config.roles, (roles) =>
  Layer.mergeAll(
    roles.api ? HttpLive : OpsHttpLive,
    App.workers(roles)
  ))).pipe(
    Layer.provide(Operations.layer("order-service")),
    Layer.provide(InfraLive)
  )

ServiceMain.launch("order-service", Layer.merge(AppLive, OpsServer.layerFromEnv.pipe(Layer.provide(InfraLive))))
