import { HttpServe, Operations, OpsServer, ServiceMain } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import { config, layerFromEnv } from "./Config.ts"
import * as Database from "./Database.ts"

const InfraLive = Layer.mergeAll(Database.layer, ServiceMain.kafka, ServiceMain.alerts).pipe(
  Layer.provideMerge(layerFromEnv)
)

const AppLive = HttpServe.layer({ defaultPort: Config.map(config, (values) => values.port) }).pipe(
  Layer.provide(App.layer),
  Layer.provide(Operations.layer("metrics-service")),
  Layer.provide(InfraLive)
)

ServiceMain.launch("metrics-service", Layer.merge(AppLive, OpsServer.layerFromEnv.pipe(Layer.provide(InfraLive))))
