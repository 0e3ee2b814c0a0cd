import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { SqlClient } from "@effect/sql/SqlClient"
import { OpsApi } from "@kpipe/contracts"
import { AdminAuth } from "@kpipe/contracts/Admin"
import { type KafkaClient, Producer } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import { Redrive } from "@kpipe/pipeline"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as AdminToken from "./AdminToken.ts"
import * as ApiDocs from "./ApiDocs.ts"
import * as HttpServe from "./HttpServe.ts"
import { consoleHtml } from "./internal/opsConsole.ts"
import * as Unavailable from "./Unavailable.ts"

/** `AdminAuth` of the ops API: the service's one admin token (`AdminToken.config`, `ADMIN_TOKEN`). */
export const layerAuth = (token: Config.Config<Redacted.Redacted> = AdminToken.config) =>
  Layer.effect(AdminAuth, Effect.map(token, AdminToken.make))

const actorOf = (actor: string | undefined) => actor ?? "admin-api"

const selectionOf = (params: typeof OpsApi.SelectionParams.Type): Redrive.Selection => {
  const { limit: _limit, status, ...filters } = params
  return { ...filters, ...(status !== undefined ? { status } : {}) } as Redrive.Selection
}

/** The database or the broker away is a 503 (logged at Warning), as on every service's own API. */
const answered = Unavailable.orServiceUnavailable("The ops API")

const notFound = (error: Redrive.NotFound) => new OpsApi.NotFound({ what: error.what, id: error.id })

const handlers = HttpApiBuilder.group(OpsApi.OpsApi, "ops", (handlers) =>
  Effect.gen(function*() {
    // Redrives outlive the request that started them; they stop with the server.
    const scope = yield* Effect.scope
    const context = yield* Effect.context<Effect.Effect.Context<ReturnType<typeof Redrive.start>>>()
    return handlers
      .handle("health", () => Effect.map(Redrive.health(), (h) => new OpsApi.Health(h)).pipe(answered))
      .handle("groups", ({ urlParams }) => Redrive.groups(selectionOf(urlParams)).pipe(answered))
      .handle(
        "failures",
        ({ urlParams }) => Redrive.list(selectionOf(urlParams), urlParams.limit ?? 100).pipe(answered)
      )
      .handle("failure", ({ path }) =>
        Redrive.inspect(path.id).pipe(
          Effect.map((detail) => new OpsApi.FailureDetail(detail)),
          Effect.catchTag("NotFound", (e) => Effect.fail(notFound(e))),
          answered
        ))
      .handle("dryRun", ({ payload }) =>
        Redrive.dryRun({ ...payload.selection }, actorOf(payload.actor)).pipe(
          Effect.map((dry) => new OpsApi.DryRun(dry)),
          answered
        ))
      .handle("redrive", ({ payload }) =>
        Redrive.start({ dryRunId: payload.dryRunId }, {
          actor: actorOf(payload.actor),
          ratePerSecond: payload.ratePerSecond,
          canary: payload.canary,
          batchSize: payload.batchSize,
          expectedCount: payload.expectedCount
        }).pipe(
          Scope.extend(scope),
          Effect.provide(context),
          Effect.map((operation) => new OpsApi.OperationStarted({ operationId: operation.operationId })),
          Effect.catchTags({
            NotFound: (e) => Effect.fail(notFound(e)),
            SelectionChanged: (e) =>
              Effect.fail(new OpsApi.SelectionChanged({ expected: e.expected, actual: e.actual }))
          }),
          answered
        ))
      .handle("operations", () => Redrive.auditLog(100).pipe(answered))
      .handle("operation", ({ path }) =>
        Effect.all({ operation: Redrive.operation(path.id), events: Redrive.auditEvents(path.id, OpsApi.maxLimit) })
          .pipe(
            Effect.catchTag("NotFound", (e) => Effect.fail(notFound(e))),
            answered
          ))
      .handle(
        "cancel",
        ({ path }) =>
          Redrive.requestCancel(path.id).pipe(Effect.map((cancelled) => ({ cancelled })), answered)
      )
      .handle(
        "park",
        ({ payload }) => Redrive.park({ ...payload.selection }, actorOf(payload.actor), payload.reason).pipe(answered)
      )
      .handle(
        "restore",
        ({ payload }) => Redrive.restore({ ...payload.selection }, actorOf(payload.actor)).pipe(answered)
      )
      .handle("outboxFailed", () => Redrive.outboxFailed(100).pipe(answered))
      .handle("outboxRetry", ({ payload }) => Redrive.outboxRetry(payload.ids, actorOf(payload.actor)).pipe(answered))
      .handle("outboxSkip", ({ payload }) => Redrive.outboxSkip(payload.ids, actorOf(payload.actor)).pipe(answered))
  }))

/** The ops API (with its auth) as an `HttpApi.Api`, for a server or a test. */
export const layerApi = (token?: Config.Config<Redacted.Redacted>) =>
  HttpApiBuilder.api(OpsApi.OpsApi).pipe(Layer.provide(handlers), Layer.provide(layerAuth(token)))

/** The console page at `/console`: plain HTML and script, nothing fetched from elsewhere. */
export const layerConsole = HttpApiBuilder.Router.use((router) =>
  router.get("/console", HttpServerResponse.html(consoleHtml))
)

/** Logs the requests that change something; the console's reads every few seconds would drown them. */
const logActions = HttpMiddleware.make((app) =>
  Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) => request.method === "GET" ? app : HttpMiddleware.logger(app)
  )
)

/** `OPS_PORT`: where a service serves its ops API and console; unset, it serves none. */
export const port: Config.Config<Option.Option<number>> = Config.option(
  Config.integer("OPS_PORT").pipe(
    Config.validate({ message: "Expected a port, 0 to 65535", validation: (port) => port >= 0 && port <= 65535 })
  )
).pipe(Config.withDescription("Port of the ops API and console on 127.0.0.1 (0: a free port, logged); unset: none"))

/**
 * The ops API, its docs at /docs and the console at /console, on a server of its own at
 * 127.0.0.1:`port`, beside the service's own API. Needs the service's database and a producer
 * (redrives send to the original topics).
 */
export const layer = (options: { readonly port: number; readonly token?: Config.Config<Redacted.Redacted> }) =>
  HttpApiBuilder.serve((app) => logActions(HttpServe.logDefects(app))).pipe(
    Layer.provide(ApiDocs.layer({ path: "/docs" })),
    Layer.provide(layerConsole),
    Layer.provide(layerApi(options.token)),
    // Not "Listening on …": that line is the service's own server (ServiceProcess reads its port from it).
    Layer.merge(Layer.effectDiscard(
      HttpServer.addressFormattedWith((address) => Effect.logInfo(`ops API and console at ${address}/console`))
    )),
    Layer.provideMerge(HttpServe.server({ port: options.port }))
  )

/**
 * `layer` built on its own (a fresh memo map): HttpApiBuilder keeps one router per layer build, so
 * built with the service's own HttpApi server the two would share it, and refuse to start on the
 * routes both declare (`/docs`).
 */
const isolated = <ROut, E, RIn>(self: Layer.Layer<ROut, E, RIn>): Layer.Layer<never, E, RIn> =>
  Layer.scopedDiscard(
    Effect.flatMap(Effect.context<RIn>(), (context) => Layer.build(Layer.provide(self, Layer.succeedContext(context))))
  )

/**
 * What a service's `main.ts` adds: `layer` on `OPS_PORT` when it is set, for the service's own
 * database (`SqlClient`), with a producer of its own on the service's `KafkaClient`, behind
 * `ADMIN_TOKEN`; a server of its own, out of the service's context.
 */
export const layerFromEnv: Layer.Layer<
  never,
  ConfigError.ConfigError | KafkaError | HttpServerError.ServeError,
  SqlClient | KafkaClient.KafkaClient
> = Layer.unwrapEffect(Effect.map(
  port,
  Option.match({
    onNone: () => Layer.effectDiscard(Effect.logDebug("ops API not served (OPS_PORT unset)")),
    onSome: (port) => isolated(layer({ port }).pipe(Layer.provide(Producer.layer())))
  })
))
