import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { HttpServe, Operations, Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "./App.ts"
import { CommerceConfig, layerFromEnv } from "./Config.ts"
import * as Database from "./Database.ts"

const InfraLive = Layer.mergeAll(
  Database.layer,
  Layer.mergeAll(Producer.layer(), Admin.layer).pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
  layerFromEnv
)

const AppLive = Layer.unwrapEffect(
  Effect.map(CommerceConfig, (config) =>
    HttpServe.layer({ defaultPort: Config.succeed(config.port) }).pipe(
      Layer.provide(App.layer),
      Layer.provide(Operations.layer("commerce-service")),
      Layer.annotateLogs({ replica: config.replica })
    ))
).pipe(Layer.provide(InfraLive))

const MainLive = Layer.effectDiscard(Effect.logInfo("commerce-service ready")).pipe(
  Layer.provide(AppLive),
  Layer.provide(Telemetry.layer("commerce-service")),
  Layer.annotateLogs({ service: "commerce-service" })
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
