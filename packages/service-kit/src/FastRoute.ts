import type * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import type { IncomingMessage } from "node:http"
import { bodyError, notJson } from "./JsonBody.ts"
import * as LabelledCounter from "./LabelledCounter.ts"

export interface Response {
  readonly status: number
  /** JSON text. */
  readonly body: string
}

/**
 * An HttpApi endpoint's hot path, answered straight from Node's request event ahead of the HttpApi
 * router, whose per-request machinery (request wrapper, router, middleware, schema-driven decoding
 * and encoding) costs several times what a cheap handler does. The answer is encoded with the
 * endpoint's own success and error schemas and statuses, so clients and the OpenAPI document see
 * the same contract. `match` takes only well-formed requests; anything else (a malformed id, a
 * missing header) returns `undefined` and goes on to the HttpApi, which gives the canonical answer.
 */
export interface FastRoute<R> {
  readonly method: string
  /** The endpoint's path template, the `route` label of its request metrics. */
  readonly path?: string | undefined
  /** The answer's Effect when this route takes the request, `undefined` to leave it to the HttpApi. */
  readonly route: (request: IncomingMessage) => Effect.Effect<Response, never, R> | undefined
}

interface Encoder {
  readonly status: number
  readonly encode: (value: unknown) => string
}

/**
 * Finds the union member of `schema` a value belongs to, once per class (or `_tag`), and encodes
 * with it; the status comes from the member's `HttpApiSchema` annotation, as the HttpApi does.
 */
const encoderFor = (
  schema: Schema.Schema.Any,
  defaultStatus: (ast: AST.AST) => number,
  keepTexts: boolean
) => {
  const members: Array<AST.AST> = []
  const flatten = (ast: AST.AST): void => {
    if (AST.isUnion(ast)) ast.types.forEach(flatten)
    else members.push(ast)
  }
  flatten(schema.ast)
  const byKind = new Map<unknown, Encoder>()
  // An error instance may be answered many times (a cached "sold out"): its text is kept.
  const texts = new WeakMap<object, string>()
  return (value: unknown): Response => {
    const kind = typeof value === "object" && value !== null
      ? value.constructor === Object ? (value as { readonly _tag?: unknown })._tag : value.constructor
      : typeof value
    let encoder = byKind.get(kind)
    if (encoder === undefined) {
      const ast = members.find((member) => Schema.is(Schema.make(member))(value)) ?? schema.ast
      const encode = Schema.encodeSync(Schema.make<unknown, unknown, never>(ast))
      encoder = { status: defaultStatus(ast), encode: (value) => JSON.stringify(encode(value)) }
      byKind.set(kind, encoder)
    }
    if (!keepTexts || typeof value !== "object" || value === null) {
      return { status: encoder.status, body: encoder.encode(value) }
    }
    let body = texts.get(value)
    if (body === undefined) {
      body = encoder.encode(value)
      texts.set(value, body)
    }
    return { status: encoder.status, body }
  }
}

const requestsServed = LabelledCounter.make(
  "http_fast_route_requests_total",
  "Requests answered by a fast route, ahead of the HttpApi router",
  "route"
)

/** Requests a fast route answered (`route` = "METHOD /path"), e.g. to see that a deployment uses it. */
export const served = (method: string, path: string) => requestsServed.counter(`${method} ${path}`)

const traceHeaders = ["traceparent", "b3", "x-b3-traceid"] as const

/**
 * Serves `endpoint` for the requests `match` accepts with `handle`, inside an `http.server` span
 * (parent from the request's trace headers, as Effect's server tracer does). Defects answer 500.
 */
export const make = <
  Name extends string,
  Method extends HttpMethod,
  Path,
  UrlParams,
  Payload,
  Headers,
  Success,
  Error,
  R,
  RE,
  Input,
  RH
>(
  endpoint: HttpApiEndpoint.HttpApiEndpoint<Name, Method, Path, UrlParams, Payload, Headers, Success, Error, R, RE>,
  options: {
    readonly match: (request: IncomingMessage) => Input | undefined
    readonly handle: (input: Input) => Effect.Effect<Success, Error | HttpApiDecodeError, RH>
  }
): FastRoute<RH> => {
  const success = encoderFor(endpoint.successSchema, HttpApiSchema.getStatusSuccessAST, false)
  // The HttpApi answers a payload that does not decode with HttpApiDecodeError (400), whatever the endpoint.
  const failure = encoderFor(
    Schema.Union(endpoint.errorSchema, HttpApiDecodeError),
    HttpApiSchema.getStatusErrorAST,
    true
  )
  const spanName = `http.server ${endpoint.method}`
  const count = Metric.increment(served(endpoint.method, endpoint.path))
  const defect = (cause: Cause.Cause<unknown>) =>
    Effect.as(Effect.logError("Unhandled defect", cause), { status: 500, body: "" } satisfies Response)
  // Encoding can throw (a value its schema refuses): that too is a defect, answered 500, so the
  // client always gets an answer.
  const answer = (exit: Exit.Exit<Success, Error | HttpApiDecodeError>): Effect.Effect<Response> => {
    if (Exit.isSuccess(exit)) return Effect.sync(() => success(exit.value))
    const error = Cause.failureOption(exit.cause)
    return Option.isSome(error) ? Effect.sync(() => failure(error.value)) : defect(exit.cause)
  }
  return {
    method: endpoint.method,
    path: endpoint.path,
    route: (request) => {
      const input = options.match(request)
      if (input === undefined) return undefined
      const headers = request.headers as Record<string, string>
      const parent = traceHeaders.some((name) => name in headers)
        ? Option.getOrUndefined(HttpTraceContext.fromHeaders(headers as never))
        : undefined
      return Effect.useSpan(spanName, { kind: "server", parent, captureStackTrace: false }, (span) => {
        span.attribute("http.request.method", endpoint.method)
        span.attribute("url.path", request.url ?? "")
        return Effect.exit(Effect.withParentSpan(options.handle(input), span)).pipe(
          Effect.flatMap(answer),
          Effect.catchAllDefect((error) => defect(Cause.die(error))),
          Effect.tap((response) => span.attribute("http.response.status_code", response.status)),
          Effect.zipLeft(count)
        )
      })
    }
  }
}

/**
 * The JSON body of a request that declared its length (`Content-Length`, which the route's `match`
 * checked against its limit), decoded with `schema`: what does not parse or decode fails with the
 * HttpApiDecodeError the HttpApi (and its `JsonBody` middleware) would answer, word for word.
 */
export const jsonBody = <A, I>(request: IncomingMessage, schema: Schema.Schema<A, I>) =>
  Effect.async<string, HttpApiDecodeError>((resume) => {
    // A client gone mid-body is its own doing, not a defect of ours: a 400 nobody reads, not an Error log and a 500.
    const unreadable = (reason: string) => bodyError(`The body could not be read: ${reason}`)
    if (request.destroyed || request.readableEnded) {
      resume(Effect.fail(unreadable("the request ended before it was read")))
      return
    }
    const chunks: Array<Buffer> = []
    const onData = (chunk: Buffer) => void chunks.push(chunk)
    const onEnd = () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    const onError = (error: Error) => resume(Effect.fail(unreadable(error.message)))
    const onClose = () => {
      if (!request.readableEnded) resume(Effect.fail(unreadable("the client closed the connection")))
    }
    request.on("data", onData).once("end", onEnd).once("error", onError).once("close", onClose)
    return Effect.sync(() => {
      request.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose)
    })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (error) => notJson(error instanceof Error ? error.message : String(error))
      })
    ),
    Effect.flatMap((json) =>
      Schema.decodeUnknown(schema)(json).pipe(Effect.catchTag("ParseError", HttpApiDecodeError.refailParseError))
    )
  )
