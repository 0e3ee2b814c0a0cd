import { HttpServe, Operations, OpsServer, ServiceMain } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import * as Config from "./Config.ts"
import * as Database from "./Database.ts"

const InfraLive = Layer.mergeAll(Database.layer, ServiceMain.kafka, ServiceMain.alerts).pipe(
  Layer.provideMerge(Config.layerFromEnv)
)

const AppLive = HttpServe.layer({ defaultPort: EffectConfig.map(Config.config, (config) => config.port) }).pipe(
  Layer.provideMerge(App.layer),
  Layer.provide(Operations.layer("d-day-service")),
  Layer.provide(InfraLive)
)

ServiceMain.launch("d-day-service", Layer.merge(AppLive, OpsServer.layerFromEnv.pipe(Layer.provide(InfraLive))))
