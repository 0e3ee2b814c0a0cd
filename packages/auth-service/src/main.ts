import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { HttpServe, Operations, Telemetry } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import * as Config from "./Config.ts"
import * as Database from "./Database.ts"

const InfraLive = Layer.mergeAll(Database.layer, Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))).pipe(
  Layer.provideMerge(Config.layerFromEnv)
)

const AppLive = HttpServe.layer({ defaultPort: EffectConfig.map(Config.config, (config) => config.port) }).pipe(
  Layer.provideMerge(App.layer),
  Layer.provide(Operations.layer("auth-service"))
)

const MainLive = Layer.effectDiscard(Effect.logInfo("auth-service ready")).pipe(
  Layer.provide(AppLive),
  Layer.provide(InfraLive),
  Layer.provide(Telemetry.layer("auth-service"))
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
