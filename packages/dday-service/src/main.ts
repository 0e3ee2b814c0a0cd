import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import * as DDayService from "./DDayService.ts"

const HttpLive = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi()),
  HttpServer.withLogAddress,
  Layer.provide(NodeHttpServer.layerConfig(createServer, {
    port: Config.integer("PORT").pipe(Config.withDefault(3002)),
    host: Config.succeed("127.0.0.1")
  }))
)

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
