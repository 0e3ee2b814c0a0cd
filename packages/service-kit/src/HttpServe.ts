import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"

export interface Options {
  /** Used when `PORT` is unset; 0 picks a free port (tests), the address is logged either way. */
  readonly defaultPort: Config.Config<number>
  /** One log line per request; off on hot paths, where it costs more than the request. */
  readonly logRequests?: boolean | undefined
}

/** Serves the HttpApi it is given on 127.0.0.1:`PORT`, with the docs page at /docs and the document at /openapi.json. */
export const layer = (options: Options) =>
  HttpApiBuilder.serve(options.logRequests === false ? undefined : HttpMiddleware.logger).pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi()),
    HttpServer.withLogAddress,
    Layer.provide(Layer.unwrapEffect(Effect.gen(function*() {
      const port = yield* Config.integer("PORT").pipe(
        Config.orElse(() => options.defaultPort),
        Config.validate({ message: "Expected a port, 0 to 65535", validation: (port) => port >= 0 && port <= 65535 })
      )
      return NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })
    })))
  )
