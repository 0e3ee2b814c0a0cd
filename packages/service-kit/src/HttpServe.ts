import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import { type IncomingMessage, Server, type ServerResponse } from "node:http"
import type * as FastRoute from "./FastRoute.ts"
import * as RequestLimits from "./RequestLimits.ts"

export type FastRoutes<R> = Effect.Effect<ReadonlyArray<FastRoute.FastRoute<never>>, never, R>

export interface Options<R = never> {
  /** Used when `PORT` is unset; 0 picks a free port (tests), the address is logged either way. */
  readonly defaultPort: Config.Config<number>
  /** One log line per request; off on hot paths, where it costs more than the request. */
  readonly logRequests?: boolean | undefined
  /** Hot endpoints answered ahead of the HttpApi router (see `FastRoute`). */
  readonly fastRoutes?: FastRoutes<R> | undefined
}

/** A Node server that offers each request to the fast routes before the HttpApi's handler sees it. */
class RoutingServer extends Server {
  take: (request: IncomingMessage, response: ServerResponse) => boolean = () => false

  readonly limits: RequestLimits.RequestLimits

  constructor(limits: RequestLimits.RequestLimits) {
    super(RequestLimits.serverOptions(limits))
    this.limits = limits
    RequestLimits.answerClientErrors(this)
  }

  override emit(event: string, ...args: Array<unknown>): boolean {
    if (event === "request") {
      const [request, response] = args as [IncomingMessage, ServerResponse]
      if (!RequestLimits.admit(request, response, this.limits) || this.take(request, response)) return true
    }
    return super.emit(event, ...args)
  }
}

const send = (response: ServerResponse, { body, status }: FastRoute.Response) => {
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  response.end(body)
}

/**
 * The HttpServer (Node, 127.0.0.1) with `fastRoutes` in front, refusing requests over the
 * `RequestLimits` of the environment (`HTTP_MAX_BODY_BYTES` …) with typed 4xx. `reusePort` lets several processes
 * listen on one port, the kernel spreading connections among them (Linux SO_REUSEPORT).
 */
export const server = <R = never>(options: {
  readonly port: number
  readonly reusePort?: boolean | undefined
  readonly fastRoutes?: FastRoutes<R> | undefined
}) =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function*() {
      const server = new RoutingServer(yield* RequestLimits.config)
      const routes = options.fastRoutes === undefined ? [] : yield* options.fastRoutes
      if (routes.length > 0) {
        // The routes' fibers start with an empty context (their Effects need no services; the
        // logger, tracer and clock live in fiber refs): every span a request opens copies and
        // compares the context it runs in, and the whole app's context made that a large share of
        // each request's time.
        const runtime = yield* Effect.runtime<never>()
        const runFork = Runtime.runFork(
          Runtime.make({ context: Context.empty(), fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags })
        )
        server.take = (request, response) => {
          for (const route of routes) {
            if (request.method !== route.method) continue
            const answer = route.route(request)
            if (answer === undefined) continue
            runFork(Effect.map(answer, (result) => send(response, result)))
            return true
          }
          return false
        }
      }
      return yield* NodeHttpServer.make(() => server, {
        port: options.port,
        host: "127.0.0.1",
        ...(options.reusePort === true ? { reusePort: true } : {})
      })
    })
  ).pipe(Layer.merge(NodeHttpServer.layerContext))

/** As `NodeHttpServer.layerTest`, with fast routes: a server on a free port and an HttpClient whose requests go to it. */
export const layerTest = <R = never>(fastRoutes?: FastRoutes<R>) =>
  HttpServer.layerTestClient.pipe(
    Layer.provide(NodeHttpClient.layerWithoutAgent),
    Layer.provide(NodeHttpClient.makeAgentLayer({ keepAlive: false })),
    Layer.provideMerge(server({ port: 0, fastRoutes }))
  )

/**
 * Serves the HttpApi it is given on 127.0.0.1:`PORT`, with the docs page at /docs and the document
 * at /openapi.json. `HTTP_REUSE_PORT=true` lets replicas share `PORT` (see `server`).
 */
export const layer = <R = never>(options: Options<R>) =>
  HttpApiBuilder.serve(options.logRequests === false ? undefined : HttpMiddleware.logger).pipe(
    Layer.provide(RequestLimits.layerRouteNotFound),
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi()),
    HttpServer.withLogAddress,
    Layer.provideMerge(Layer.unwrapEffect(Effect.gen(function*() {
      const port = yield* Config.integer("PORT").pipe(
        Config.orElse(() => options.defaultPort),
        Config.validate({ message: "Expected a port, 0 to 65535", validation: (port) => port >= 0 && port <= 65535 })
      )
      const reusePort = yield* Config.boolean("HTTP_REUSE_PORT").pipe(Config.withDefault(false))
      return server({ port, reusePort, fastRoutes: options.fastRoutes })
    })))
  )
