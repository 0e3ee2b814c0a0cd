import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import { KafkaClient, Producer } from "@kpipe/kafka"
import { OutboxRelay } from "@kpipe/pipeline"
import { Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import * as AuthDatabase from "./AuthDatabase.ts"
import * as AuthTopics from "./AuthTopics.ts"
import { Members } from "./Members.ts"
import { ApiLive } from "./MembersHttp.ts"

const HttpLive = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi()),
  Layer.provide(ApiLive),
  HttpServer.withLogAddress,
  Layer.provide(NodeHttpServer.layerConfig(createServer, {
    // 0 picks a free port (tests); the address is logged either way.
    port: Config.integer("PORT").pipe(
      Config.validate({ message: "Expected a port, 0 to 65535", validation: (port) => port >= 0 && port <= 65535 }),
      Config.withDefault(3001)
    ),
    host: Config.succeed("127.0.0.1")
  }))
)

const RelayLive = OutboxRelay.layer().pipe(Layer.provide(Producer.layer()))

const Ready = Layer.effectDiscard(Effect.logInfo("auth-service ready"))

const MainLive = Ready.pipe(
  Layer.provide(Layer.mergeAll(HttpLive, RelayLive)),
  Layer.provide(Members.Default),
  Layer.provide(AuthTopics.layerCreate),
  Layer.provide(Layer.mergeAll(AuthDatabase.layer, KafkaClient.layerFromEnv)),
  Layer.provide(Telemetry.layer("auth-service"))
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
