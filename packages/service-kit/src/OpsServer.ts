import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { OpsApi } from "@kpipe/contracts"
import { Redrive } from "@kpipe/pipeline"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { createHash, timingSafeEqual } from "node:crypto"
import * as HttpServe from "./HttpServe.ts"
import { consoleHtml } from "./internal/opsConsole.ts"

/**
 * Whether `supplied` is the admin token, compared in constant time. The one place the ops API
 * checks its token, so a shared admin-token check can replace it.
 */
export const isAdminToken = (expected: Redacted.Redacted, supplied: Redacted.Redacted): boolean => {
  const digest = (value: string) => createHash("sha256").update(value).digest()
  return timingSafeEqual(digest(Redacted.value(expected)), digest(Redacted.value(supplied))) &&
    Redacted.value(expected).length > 0
}

/** `OPS_ADMIN_TOKEN`: the bearer token every ops request must carry. */
export const adminToken = Config.redacted("OPS_ADMIN_TOKEN").pipe(
  Config.withDescription("Bearer token of the admin (ops) API and console")
)

export const layerAuth = (token: Config.Config<Redacted.Redacted> = adminToken) =>
  Layer.effect(
    OpsApi.AdminAuth,
    Effect.map(token, (expected) =>
      OpsApi.AdminAuth.of({
        bearer: (supplied) => isAdminToken(expected, supplied) ? Effect.void : Effect.fail(new OpsApi.Unauthorized())
      }))
  )

const actorOf = (actor: string | undefined) => actor ?? "admin-api"

const selectionOf = (params: typeof OpsApi.SelectionParams.Type): Redrive.Selection => {
  const { limit: _limit, status, ...filters } = params
  return { ...filters, ...(status !== undefined ? { status } : {}) } as Redrive.Selection
}

const notFound = (error: Redrive.NotFound) => new OpsApi.NotFound({ what: error.what, id: error.id })

const handlers = HttpApiBuilder.group(OpsApi.OpsApi, "ops", (handlers) =>
  Effect.gen(function*() {
    // Redrives outlive the request that started them; they stop with the server.
    const scope = yield* Effect.scope
    const context = yield* Effect.context<Effect.Effect.Context<ReturnType<typeof Redrive.start>>>()
    return handlers
      .handle("health", () => Effect.map(Redrive.health(), (h) => new OpsApi.Health(h)).pipe(Effect.orDie))
      .handle("groups", ({ urlParams }) => Redrive.groups(selectionOf(urlParams)).pipe(Effect.orDie))
      .handle("failures", ({ urlParams }) =>
        Redrive.list(selectionOf(urlParams), urlParams.limit ?? 100).pipe(Effect.orDie))
      .handle("failure", ({ path }) =>
        Redrive.inspect(path.id).pipe(
          Effect.map((detail) =>
            new OpsApi.FailureDetail(detail)
          ),
          Effect.catchTag("NotFound", (e) => Effect.fail(notFound(e))),
          Effect.orDie
        ))
      .handle("dryRun", ({ payload }) =>
        Redrive.dryRun({ ...payload.selection }, actorOf(payload.actor)).pipe(
          Effect.map((dry) => new OpsApi.DryRun(dry)),
          Effect.orDie
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
          Effect.orDie
        ))
      .handle("operations", () => Redrive.auditLog(100).pipe(Effect.orDie))
      .handle("operation", ({ path }) =>
        Effect.all({ operation: Redrive.operation(path.id), events: Redrive.auditEvents(path.id) }).pipe(
          Effect.catchTag("NotFound", (e) => Effect.fail(notFound(e))),
          Effect.orDie
        ))
      .handle("cancel", ({ path }) =>
        Redrive.requestCancel(path.id).pipe(Effect.map((cancelled) => ({ cancelled })), Effect.orDie))
      .handle("park", ({ payload }) =>
        Redrive.park({ ...payload.selection }, actorOf(payload.actor), payload.reason).pipe(Effect.orDie))
      .handle("restore", ({ payload }) =>
        Redrive.restore({ ...payload.selection }, actorOf(payload.actor)).pipe(Effect.orDie))
      .handle("outboxFailed", () =>
        Redrive.outboxFailed(100).pipe(Effect.orDie))
      .handle("outboxRetry", ({ payload }) =>
        Redrive.outboxRetry(payload.ids, actorOf(payload.actor)).pipe(Effect.orDie))
      .handle("outboxSkip", ({ payload }) =>
        Redrive.outboxSkip(payload.ids, actorOf(payload.actor)).pipe(Effect.orDie))
  }))

/** The ops API (with its auth) as an `HttpApi.Api`, for a server or a test. */
export const layerApi = (token?: Config.Config<Redacted.Redacted>) =>
  HttpApiBuilder.api(OpsApi.OpsApi).pipe(Layer.provide(handlers), Layer.provide(layerAuth(token)))

/** The console page at `/console`: plain HTML and script, nothing fetched from elsewhere. */
export const layerConsole = HttpApiBuilder.Router.use((router) =>
  router.get("/console", HttpServerResponse.html(consoleHtml))
)

/**
 * The ops API, its docs at /docs and the console at /console, on a server of its own at
 * 127.0.0.1:`OPS_PORT`, beside the service's own API.
 */
export const layer = (
  options: { readonly defaultPort?: number | undefined; readonly token?: Config.Config<Redacted.Redacted> } = {}
) =>
  HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
    Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
    Layer.provide(layerConsole),
    Layer.provide(layerApi(options.token)),
    HttpServer.withLogAddress,
    Layer.provideMerge(Layer.unwrapEffect(Effect.map(
      Config.integer("OPS_PORT").pipe(
        Config.withDefault(options.defaultPort ?? 0),
        Config.withDescription("Port of the ops API and console (0: a free port, logged)")
      ),
      (port) => HttpServe.server({ port })
    )))
  )
