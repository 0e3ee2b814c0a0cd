import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as AdminToken from "./AdminToken.ts"
import * as HttpServe from "./HttpServe.ts"
import { consoleHtml } from "./internal/opsConsole.ts"

/**
 * One ops console over many services: `/console`, the list of services at `/services`, and each
 * service's ops API at `/services/{name}/ops/…`, forwarded to the first of its `urls` (its
 * replicas' `OpsServer`s, which share its database) that answers.
 */
export interface Upstream {
  readonly name: string
  /** Base URLs of the service's ops servers, e.g. `http://127.0.0.1:3130`; tried in order. */
  readonly urls: ReadonlyArray<string>
}

const error = (status: number, tag: string, message: string) =>
  HttpServerResponse.unsafeJson({ _tag: tag, message }, { status })

/** The gateway checks the token itself too, so nothing reaches a service (or lists them) without it. */
const authorized = (token: Redacted.Redacted, request: HttpServerRequest.HttpServerRequest) => {
  const header = request.headers["authorization"] ?? ""
  return header.startsWith("Bearer ") && AdminToken.matches(token, Redacted.make(header.slice("Bearer ".length)))
}

/**
 * A request that may have reached the upstream (anything but a refused connection) is not sent to
 * the next one unless it only reads: a slow park or dry-run would run twice.
 */
const neverSent = (cause: unknown) =>
  cause instanceof Error && (cause.cause as { readonly code?: unknown } | undefined)?.code === "ECONNREFUSED"

/** Forwards to the first upstream answering; a refused connection (or a failed read) tries the next. */
const forward = (upstream: Upstream, path: string, request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const body = request.method === "GET" || request.method === "HEAD"
      ? undefined
      : new Uint8Array(yield* request.arrayBuffer)
    const headers: Record<string, string> = { authorization: request.headers["authorization"] ?? "" }
    if (request.headers["content-type"] !== undefined) headers["content-type"] = request.headers["content-type"]
    const failures: Array<string> = []
    for (const url of upstream.urls) {
      const answer = yield* Effect.tryPromise({
        try: async (signal) => {
          const response = await fetch(`${url}${path}`, {
            method: request.method,
            headers,
            ...(body === undefined ? {} : { body }),
            signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)])
          })
          return {
            status: response.status,
            contentType: response.headers.get("content-type") ?? "application/json",
            body: new Uint8Array(await response.arrayBuffer())
          }
        },
        catch: (cause) => cause
      }).pipe(Effect.either)
      if (answer._tag === "Right") {
        return HttpServerResponse.uint8Array(answer.right.body, {
          status: answer.right.status,
          contentType: answer.right.contentType
        })
      }
      failures.push(`${url}: ${String(answer.left)}`)
      if (body !== undefined && !neverSent(answer.left)) break
    }
    yield* Effect.logWarning(`ops API of ${upstream.name} unreachable; its failures cannot be shown`).pipe(
      Effect.annotateLogs({ service: upstream.name, tried: failures.join("; ") })
    )
    return error(502, "ServiceUnreachable", `${upstream.name}: no ops server answered (${upstream.urls.join(", ")})`)
  })

/** The gateway's routes; serve them with `layer`, or mount them on a server of one's own. */
export const router = (options: { readonly services: ReadonlyArray<Upstream>; readonly token: Redacted.Redacted }) => {
  const byName = new Map(options.services.map((service) => [service.name, service]))
  const guarded = <E, R>(
    handle: (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
  ) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      authorized(options.token, request)
        ? handle(request)
        : Effect.succeed(error(401, "Unauthorized", "Missing or wrong admin token (Authorization: Bearer …).")))
  return HttpRouter.empty.pipe(
    HttpRouter.get("/console", HttpServerResponse.html(consoleHtml)),
    HttpRouter.get(
      "/services",
      guarded(() => Effect.succeed(HttpServerResponse.unsafeJson(options.services.map(({ name }) => ({ name })))))
    ),
    HttpRouter.all(
      "/services/:name/*",
      guarded((request) => {
        const [, , name = "", ...rest] = request.url.split("/")
        const upstream = byName.get(decodeURIComponent(name))
        if (upstream === undefined) return Effect.succeed(error(404, "NotFound", `no service ${name}`))
        // As the upstream will read it: `/ops/%2e%2e/docs` is `/docs`.
        const url = new URL(`/${rest.join("/")}`, "http://upstream")
        const path = `${url.pathname}${url.search}`
        // Only the ops API is forwarded, not whatever else a service's server answers.
        if (!url.pathname.startsWith("/ops/")) {
          return Effect.succeed(error(404, "NotFound", `not an ops path: ${url.pathname}`))
        }
        return forward(upstream, path, request)
      })
    )
  )
}

/** The gateway on 127.0.0.1:`port` (0: a free port; the address is logged). */
export const layer = (options: {
  readonly port: number
  readonly services: ReadonlyArray<Upstream>
  readonly token: Redacted.Redacted
}) =>
  // No request log: the console polls every service every few seconds; the services log the actions.
  HttpServer.serve(router(options)).pipe(
    HttpServer.withLogAddress,
    Layer.provideMerge(HttpServe.server({ port: options.port }))
  )
