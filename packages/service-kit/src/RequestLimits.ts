import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import {
  HeadersTooLarge,
  MalformedRequest,
  PayloadTooLarge,
  RequestTimeout,
  RouteNotFound
} from "@kpipe/contracts/HttpErrors"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"

/** What a service accepts of one request, from the environment; each over-limit request gets a typed 4xx. */
export interface RequestLimits {
  /** Body bytes at most (413 `PayloadTooLarge`), checked on `Content-Length` and counted on chunked bodies. */
  readonly maxBodyBytes: number
  /** Header bytes at most (431 `HeadersTooLarge`). */
  readonly maxHeaderBytes: number
  /** Time for the whole request to arrive (408 `RequestTimeout`): a slow body does not hold a connection forever. */
  readonly requestTimeout: Duration.Duration
  /** Time for the headers to arrive (408). */
  readonly headersTimeout: Duration.Duration
}

export const defaults: RequestLimits = {
  maxBodyBytes: 64 * 1024,
  maxHeaderBytes: 16 * 1024,
  requestTimeout: Duration.seconds(30),
  headersTimeout: Duration.seconds(10)
}

const positive = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDescription(description)
  )

const duration = (name: string, fallback: Duration.Duration, description: string) =>
  Config.duration(name).pipe(Config.withDefault(fallback), Config.withDescription(description))

export const config: Config.Config<RequestLimits> = Config.all({
  maxBodyBytes: positive("HTTP_MAX_BODY_BYTES", defaults.maxBodyBytes, "Largest request body, in bytes (413 above)"),
  maxHeaderBytes: positive(
    "HTTP_MAX_HEADER_BYTES",
    defaults.maxHeaderBytes,
    "Largest request header section, in bytes (431 above)"
  ),
  requestTimeout: duration(
    "HTTP_REQUEST_TIMEOUT",
    defaults.requestTimeout,
    "Time for a whole request (headers and body) to arrive (408 after)"
  ),
  headersTimeout: duration("HTTP_HEADERS_TIMEOUT", defaults.headersTimeout, "Time for a request's headers to arrive")
}).pipe(
  Config.map((limits) => ({ ...limits, headersTimeout: Duration.min(limits.headersTimeout, limits.requestTimeout) }))
)

/** Node's server options enforcing `limits` (the checks run every second at most). */
export const serverOptions = (limits: RequestLimits): ServerOptions => {
  const headersTimeout = Duration.toMillis(limits.headersTimeout)
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: Duration.toMillis(limits.requestTimeout),
    headersTimeout,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 2)))
  }
}

export const payloadTooLarge = (maxBytes: number) =>
  new PayloadTooLarge({ message: `The request body is over ${maxBytes} bytes.`, maxBytes })

const encodeJson = <A, I>(schema: Schema.Schema<A, I>) => {
  const encode = Schema.encodeSync(schema)
  return (value: A) => JSON.stringify(encode(value))
}
const payloadTooLargeJson = encodeJson(PayloadTooLarge)

/** The body length a request declares in its `Content-Length`, if any. */
export const declaredLength = (headers: IncomingMessage["headers"]): number | undefined => {
  const header = headers["content-length"]
  if (header === undefined) return undefined
  const length = Number(header)
  return Number.isFinite(length) ? length : undefined
}

/** Whether the request declares a body longer than `maxBytes` in its `Content-Length`. */
export const declaresTooMuch = (headers: IncomingMessage["headers"], maxBytes: number): boolean =>
  (declaredLength(headers) ?? 0) > maxBytes

/** Requests whose chunked body went over the limit: their body was cut there, and they are answered 413. */
const cut = new WeakSet<IncomingMessage>()

/** Whether `request`'s body was cut at the limit (`admit`). */
export const wasCut = (request: IncomingMessage): boolean => cut.has(request)

/**
 * Called on each request before anything reads it. A declared `Content-Length` over the limit is
 * answered 413 at once (`false`: the request is done), its body never read; a body without one
 * (chunked) is counted as Node's parser pushes it, and cut at the limit: the readers see it end
 * there, the rest is never read, and `JsonBody` answers 413 (`wasCut`). Either way the connection
 * closes after the answer rather than reading on.
 */
export const admit = (request: IncomingMessage, response: ServerResponse, limits: RequestLimits): boolean => {
  const { maxBodyBytes } = limits
  if (declaresTooMuch(request.headers, maxBodyBytes)) {
    const body = payloadTooLargeJson(payloadTooLarge(maxBodyBytes))
    response.writeHead(413, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      connection: "close"
    })
    response.end(body)
    return false
  }
  if (declaredLength(request.headers) === undefined && request.headers["transfer-encoding"] !== undefined) {
    let bytes = 0
    const push = request.push.bind(request)
    request.push = (chunk: unknown, encoding?: BufferEncoding) => {
      if (cut.has(request)) return false
      if (chunk === null) return push(null)
      bytes += (chunk as Buffer).length
      if (bytes <= maxBodyBytes) return push(chunk, encoding)
      cut.add(request)
      response.setHeader("connection", "close")
      // Ended here: without `complete`, ending would count as an aborted request and reset the socket
      // before the 413 is written.
      request.complete = true
      push(null)
      return false
    }
  }
  return true
}

const clientErrorAnswer = (code: string | undefined): readonly [number, string, string] => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return [
        431,
        "Request Header Fields Too Large",
        JSON.stringify(
          Schema.encodeSync(HeadersTooLarge)(
            new HeadersTooLarge({ message: "The request's headers are over the limit." })
          )
        )
      ]
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return [
        408,
        "Request Timeout",
        JSON.stringify(
          Schema.encodeSync(RequestTimeout)(
            new RequestTimeout({ message: "The request did not arrive in time." })
          )
        )
      ]
    default:
      return [
        400,
        "Bad Request",
        JSON.stringify(
          Schema.encodeSync(MalformedRequest)(
            new MalformedRequest({ message: "The request is not well-formed HTTP/1.1." })
          )
        )
      ]
  }
}

/**
 * Answers what Node's parser refuses (malformed HTTP, headers over the limit, a request too slow)
 * with a typed JSON body instead of Node's bare status line.
 */
export const answerClientErrors = (server: Server): void => {
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex & { bytesWritten?: number }) => {
    if (error.code === "ECONNRESET" || !socket.writable || (socket.bytesWritten ?? 0) > 0) {
      socket.destroy()
      return
    }
    const [status, reason, body] = clientErrorAnswer(error.code)
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${
        Buffer.byteLength(body)
      }\r\nconnection: close\r\n\r\n${body}`
    )
  })
}

/** Answers any request with the typed 404 `RouteNotFound`. */
export const notFound: HttpApp.Default = Effect.flatMap(
  HttpServerRequest.HttpServerRequest,
  (request) =>
    HttpServerResponse.json(
      Schema.encodeSync(RouteNotFound)(
        new RouteNotFound({ message: `No endpoint for ${request.method} ${request.url.split("?")[0]}.` })
      ),
      { status: 404 }
    ).pipe(Effect.orDie)
)

const typedNotFound = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.catchIf(
    app,
    (error): error is E & HttpServerError.RouteNotFound =>
      HttpServerError.isServerError(error) && error._tag === "RouteNotFound",
    () => notFound
  )

/** HttpApi middleware: a request no endpoint matches gets a typed 404 `RouteNotFound`, not an empty one. */
export const layerRouteNotFound: Layer.Layer<never> = HttpApiBuilder.middleware(typedNotFound)
