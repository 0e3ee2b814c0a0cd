import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpServer from "@effect/platform/HttpServer"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import * as AccountService from "./AccountService.ts"
import * as Replica from "./Replica.ts"

const ServerLive = Layer.unwrapEffect(Effect.gen(function*() {
  const replica = yield* Replica.replica
  const port = yield* Config.integer("PORT").pipe(Config.withDefault(Replica.basePort + replica))
  return NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })
}))

const HttpLive = HttpApiBuilder.serve().pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi()),
  HttpServer.withLogAddress,
  Layer.provide(ServerLive)
)

const KafkaLive = Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))

const AppLive = HttpLive.pipe(
  Layer.provideMerge(AccountService.layer),
  Layer.provide(Layer.mergeAll(KafkaLive, AccountService.DatabaseLive))
)

const MainLive = Layer.unwrapEffect(
  Effect.map(Replica.replica, (replica) =>
    Layer.effectDiscard(Effect.logInfo("account-service ready")).pipe(
      Layer.provide(AppLive),
      Layer.provide(Telemetry.layer("account-service")),
      Layer.annotateLogs({ service: "account-service", replica })
    ))
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
