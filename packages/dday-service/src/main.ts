import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { HttpServe, Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as DDayService from "./DDayService.ts"

const HttpLive = HttpServe.layer({ defaultPort: Config.succeed(3002) })

const KafkaLive = Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))

const AppLive = HttpLive.pipe(
  Layer.provideMerge(DDayService.layer),
  Layer.provide(AlertSink.layerConfig),
  Layer.provide(NodeHttpClient.layerUndici),
  Layer.provide(Layer.mergeAll(KafkaLive, DDayService.DatabaseLive))
)

const MainLive = Layer.effectDiscard(Effect.logInfo("d-day-service ready")).pipe(
  Layer.provide(AppLive),
  Layer.provide(Telemetry.layer("d-day-service")),
  Layer.annotateLogs({ service: "d-day-service" })
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
