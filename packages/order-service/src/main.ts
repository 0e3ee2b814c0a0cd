import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { HttpServe, Operations, Telemetry } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import * as Config from "./Config.ts"
import * as Database from "./Database.ts"

const InfraLive = Layer.mergeAll(
  Database.layer,
  Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
  AlertSink.layerConfig.pipe(Layer.provideMerge(NodeHttpClient.layerUndici))
).pipe(Layer.provideMerge(Config.layerFromEnv))

const AppLive = HttpServe.layer({ defaultPort: EffectConfig.map(Config.config, (config) => config.port) }).pipe(
  Layer.provide(App.layer),
  Layer.provide(Operations.layer("order-service"))
)

const MainLive = Layer.effectDiscard(Effect.logInfo("order-service ready")).pipe(
  Layer.provide(AppLive),
  Layer.provide(InfraLive),
  Layer.provide(Telemetry.layer("order-service")),
  Layer.annotateLogs({ service: "order-service" })
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
