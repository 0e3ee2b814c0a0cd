import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import { type IncomingMessage, Server, type ServerResponse } from "node:http"
import * as ApiDocs from "./ApiDocs.ts"
import type * as FastRoute from "./FastRoute.ts"
import * as Health from "./Health.ts"
import * as Prometheus from "./Prometheus.ts"
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

/** Answers a request outside the HttpApi (health, metrics). */
type PlainRoute = (request: IncomingMessage, response: ServerResponse) => void

/** What a server answers besides the HttpApi: readiness and liveness, and the Prometheus scrape. */
export interface Operations {
  readonly health?: Health.Health["Type"] | undefined
  readonly prometheus?: Prometheus.Prometheus["Type"] | undefined
}

const plainRoutes = (operations: Operations, runFork: ReturnType<typeof Runtime.runFork<never>>) => {
  const routes = new Map<string, PlainRoute>()
  const { health, prometheus } = operations
  if (health !== undefined) {
    const answer = (report: Effect.Effect<Health.Report>): PlainRoute => (_, response) =>
      runFork(Effect.map(report, (result) => {
        const body = Health.encodeReport(result)
        response.writeHead(result.status === "ok" ? 200 : 503, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "cache-control": "no-store"
        })
        response.end(body)
      }))
    routes.set("/health/live", answer(health.live))
    routes.set("/health/ready", answer(health.ready))
  }
  if (prometheus !== undefined) routes.set("/metrics", prometheus.handle)
  return routes
}

/** The route template of a request's path among the HttpApi's endpoints ("unmatched" otherwise): a bounded label. */
const routeMatcher = (api: HttpApi.HttpApi.Any) => {
  const templates: Array<{ readonly method: string; readonly path: string; readonly pattern: RegExp }> = []
  HttpApi.reflect(api as HttpApi.HttpApi.AnyWithProps, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      const pattern = endpoint.path.split("/").map((part) =>
        part.startsWith(":") ? "[^/]+" : part === "*" ? ".*" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      ).join("/")
      templates.push({ method: endpoint.method, path: endpoint.path, pattern: new RegExp(`^${pattern}/?$`) })
    }
  })
  return (method: string, url: string) => {
    const path = url.split("?", 1)[0]!
    return templates.find((t) => t.method === method && t.pattern.test(path))?.path ??
      templates.find((t) => t.pattern.test(path))?.path ??
      (path === "/docs" || path.startsWith("/docs/") ? "/docs" : path === "/openapi.json" ? path : "unmatched")
  }
}

const observeDuration = (method: string, route: string, status: number, started: number) =>
  Metric.update(Prometheus.requestDurationOf(method, route, String(status)), (performance.now() - started) / 1000)

/** The HttpApi's request-duration histogram, by method, route template and status. */
const requestMetrics = (api: HttpApi.HttpApi.Any) => {
  const routeOf = routeMatcher(api)
  return HttpMiddleware.make((app) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const started = performance.now()
      return app.pipe(Effect.onExit((exit) => {
        const route = routeOf(request.method, request.url)
        return Exit.isSuccess(exit)
          ? observeDuration(request.method, route, exit.value.status, started)
          : observeDuration(request.method, route, HttpServerError.causeResponseStripped(exit.cause)[0].status, started)
      }))
    })
  )
}

/**
 * Logs at Error every request that ended in a defect (answered 500). Effect's platform logs a
 * handler's cause only in `HttpMiddleware.logger`, at Info, and the hot services run without it.
 */
export const logDefects = HttpMiddleware.make((app) =>
  Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) =>
      Effect.tapErrorCause(app, (cause) =>
        Cause.isDie(cause)
          ? Effect.logError("A request failed with a defect; answered 500", cause).pipe(
            Effect.annotateLogs({ "http.method": request.method, "http.path": request.url.split("?")[0] })
          )
          : Effect.void)
  )
)

/** How long a closing server lets requests in progress finish. */
const closeGraceMs = 10_000

/** A Node server that offers each request to the fast routes before the HttpApi's handler sees it. */
class RoutingServer extends Server {
  take: (request: IncomingMessage, response: ServerResponse) => boolean = () => false

  readonly limits: RequestLimits.RequestLimits

  constructor(limits: RequestLimits.RequestLimits) {
    super(RequestLimits.serverOptions(limits))
    this.limits = limits
    RequestLimits.answerClientErrors(this)
  }

  #closing = false

  override emit(event: string, ...args: Array<unknown>): boolean {
    if (event === "request") {
      const [request, response] = args as [IncomingMessage, ServerResponse]
      if (this.#closing) response.setHeader("connection", "close")
      if (!RequestLimits.admit(request, response, this.limits) || this.take(request, response)) return true
    }
    return super.emit(event, ...args)
  }

  /**
   * Node's `close` ends only the connections idle at that moment: one busy then stays open for as
   * long as its client keeps reusing it (a Prometheus scraping every second kept a stopping service
   * from ever closing, until it was killed). Once closing, every answer says `Connection: close`,
   * connections are closed as soon as they are idle, and whatever is still open after
   * `closeGraceMs` is cut.
   */
  override close(callback?: (error?: Error) => void): this {
    this.#closing = true
    super.close(callback)
    const sweep = setInterval(() => this.closeIdleConnections(), 100).unref()
    const deadline = setTimeout(() => this.closeAllConnections(), closeGraceMs).unref()
    this.once("close", () => {
      clearInterval(sweep)
      clearTimeout(deadline)
    })
    return this
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
  /** Served ahead of everything at /health/live, /health/ready and /metrics. */
  readonly operations?: Operations | undefined
}) =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function*() {
      const server = new RoutingServer(yield* RequestLimits.config)
      const routes = options.fastRoutes === undefined ? [] : yield* options.fastRoutes
      const plain = plainRoutes(options.operations ?? {}, Runtime.runFork(yield* Effect.runtime<never>()))
      if (routes.length > 0 || plain.size > 0) {
        // The routes' fibers start with an empty context (their Effects need no services; the
        // logger, tracer and clock live in fiber refs): every span a request opens copies and
        // compares the context it runs in, and the whole app's context made that a large share of
        // each request's time.
        const runtime = yield* Effect.runtime<never>()
        const runFork = Runtime.runFork(
          Runtime.make({ context: Context.empty(), fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags })
        )
        const timed = routes.map((route) => {
          const template = route.path ?? "fast route"
          // The route's few statuses, each with its histogram at hand.
          const durations = new Map<number, ReturnType<typeof Prometheus.requestDurationOf>>()
          const durationOf = (status: number) => {
            let found = durations.get(status)
            if (found === undefined) {
              found = Prometheus.requestDurationOf(route.method, template, String(status))
              durations.set(status, found)
            }
            return found
          }
          return (request: IncomingMessage, response: ServerResponse) => {
            const answer = route.route(request)
            if (answer === undefined) return false
            const started = performance.now()
            runFork(Effect.flatMap(answer, (result) => {
              send(response, result)
              return Metric.update(durationOf(result.status), (performance.now() - started) / 1000)
            }))
            return true
          }
        })
        server.take = (request, response) => {
          if (request.method === "GET" && plain.size > 0) {
            const handle = plain.get(request.url ?? "")
            if (handle !== undefined) {
              handle(request, response)
              return true
            }
          }
          for (let i = 0; i < routes.length; i++) {
            if (request.method !== routes[i]!.method) continue
            if (timed[i]!(request, response)) return true
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

const operationsInContext = Effect.all({
  health: Effect.map(Effect.serviceOption(Health.Health), Option.getOrUndefined),
  prometheus: Effect.map(Effect.serviceOption(Prometheus.Prometheus), Option.getOrUndefined)
})

/**
 * As `NodeHttpServer.layerTest`, with fast routes: a server on a free port and an HttpClient whose
 * requests go to it; health and metrics are served when `Health` and `Prometheus` are in context.
 */
export const layerTest = <R = never>(fastRoutes?: FastRoutes<R>) =>
  HttpServer.layerTestClient.pipe(
    Layer.provide(NodeHttpClient.layerWithoutAgent),
    Layer.provide(NodeHttpClient.makeAgentLayer({ keepAlive: false })),
    Layer.provideMerge(
      Layer.unwrapEffect(Effect.map(operationsInContext, (operations) => server({ port: 0, fastRoutes, operations })))
    )
  )

/**
 * Serves the HttpApi it is given on 127.0.0.1:`PORT`, with the docs page at /docs, the document
 * at /openapi.json, readiness and liveness at /health/ready and /health/live (`Health`), and the
 * Prometheus scrape at /metrics (`Prometheus`, with a request-duration histogram by route
 * template and status). `HTTP_REUSE_PORT=true` lets replicas share `PORT` (see `server`).
 */
export const layer = <R = never>(options: Options<R>) =>
  Layer.unwrapEffect(Effect.map(HttpApi.Api, ({ api }) => {
    const metrics = requestMetrics(api)
    return HttpApiBuilder.serve(
      options.logRequests === false
        ? (app) => metrics(logDefects(app))
        : (app) => metrics(HttpMiddleware.logger(logDefects(app)))
    )
  })).pipe(
    Layer.provide(RequestLimits.layerRouteNotFound),
    Layer.provide(ApiDocs.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi()),
    HttpServer.withLogAddress,
    Layer.provideMerge(onPort(options))
  )

/** `server` on `PORT` (else `defaultPort`; `HTTP_REUSE_PORT`), with `Health` and `Prometheus` served. */
const onPort = <R>(
  options: { readonly defaultPort: Config.Config<number>; readonly fastRoutes?: FastRoutes<R> | undefined }
) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const port = yield* Config.integer("PORT").pipe(
      Config.orElse(() => options.defaultPort),
      Config.validate({ message: "Expected a port, 0 to 65535", validation: (port) => port >= 0 && port <= 65535 })
    )
    const reusePort = yield* Config.boolean("HTTP_REUSE_PORT").pipe(Config.withDefault(false))
    const operations = { health: yield* Health.Health, prometheus: yield* Prometheus.Prometheus }
    return server({ port, reusePort, fastRoutes: options.fastRoutes, operations })
  }))

/**
 * For a process that serves no API (a workers-only role): /health/live, /health/ready and /metrics
 * on `PORT` as `layer` serves them, every other request a typed 404 `RouteNotFound`, so its
 * consumers and relay are probed and scraped like any other process's.
 */
export const layerOperations = (options: { readonly defaultPort: Config.Config<number> }) =>
  HttpServer.serve(RequestLimits.notFound).pipe(
    HttpServer.withLogAddress,
    Layer.provideMerge(onPort<never>(options))
  )
