import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { HttpServe, Operations, Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import { layerFromEnv, MetricsConfig } from "./Config.ts"
import * as Database from "./Database.ts"

const InfraLive = Layer.mergeAll(
  Database.layer,
  Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
  AlertSink.layerConfig.pipe(Layer.provideMerge(NodeHttpClient.layerUndici)),
  layerFromEnv
)

const AppLive = Layer.unwrapEffect(
  Effect.map(MetricsConfig, (config) =>
    HttpServe.layer({ defaultPort: Config.succeed(config.port) }).pipe(
      Layer.provide(App.layer),
      Layer.provide(Operations.layer("metrics-service")),
      Layer.annotateLogs({ replica: config.replica })
    ))
).pipe(Layer.provide(InfraLive))

const MainLive = Layer.effectDiscard(Effect.logInfo("metrics-service ready")).pipe(
  Layer.provide(AppLive),
  Layer.provide(Telemetry.layer("metrics-service")),
  Layer.annotateLogs({ service: "metrics-service" })
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
