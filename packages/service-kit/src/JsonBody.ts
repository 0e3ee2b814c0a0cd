import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { HttpServerRequest } from "@effect/platform/HttpServerRequest"
import type { PayloadTooLarge } from "@kpipe/contracts/HttpErrors"
import { JsonBody } from "@kpipe/contracts/JsonBody"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RequestLimits from "./RequestLimits.ts"

const overLimit = (error: { readonly cause?: unknown }) =>
  error.cause instanceof Error && error.cause.message === "maxBytes exceeded"

/** A 400 about the body as a whole, as the HttpApi words it. */
export const bodyError = (message: string): HttpApiDecodeError =>
  new HttpApiDecodeError({ issues: [{ _tag: "Type", path: [], message }], message })

/** The answer to a body that does not parse, `reason` being the parser's. */
export const notJson = (reason: string): HttpApiDecodeError => bodyError(`The body is not valid JSON: ${reason}`)

/**
 * Implements the contracts' `JsonBody` middleware: a body over `maxBodyBytes` is a typed 413
 * (declared by `Content-Length`: never read; chunked: read up to the limit only), a body that does
 * not parse a typed 400, like a body of the wrong shape.
 */
export const make = (maxBodyBytes: number): JsonBody["Type"] =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest
    if (!HttpMethod.hasBody(request.method)) return
    if (RequestLimits.declaresTooMuch(request.headers, maxBodyBytes)) {
      return yield* RequestLimits.payloadTooLarge(maxBodyBytes)
    }
    const contentType = (request.headers["content-type"] ?? "application/json").toLowerCase()
    if (!contentType.includes("application/json")) return
    // The request caches the body text, so payload decoding reads it again for free.
    const wasCut = () => RequestLimits.wasCut(NodeHttpServerRequest.toIncomingMessage(request))
    yield* request.json.pipe(
      HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)),
      Effect.catchAll((error): Effect.Effect<never, HttpApiDecodeError | PayloadTooLarge> => {
        if (overLimit(error) || wasCut()) return Effect.fail(RequestLimits.payloadTooLarge(maxBodyBytes))
        return Effect.fail(notJson(error.cause instanceof Error ? error.cause.message : error.message))
      })
    )
    if (wasCut()) {
      return yield* RequestLimits.payloadTooLarge(maxBodyBytes)
    }
  })

/** `JsonBody` with the body limit of the environment (`HTTP_MAX_BODY_BYTES`, `RequestLimits.config`). */
export const layer: Layer.Layer<JsonBody, ConfigError.ConfigError> = Layer.effect(
  JsonBody,
  Effect.map(RequestLimits.config, (limits) => make(limits.maxBodyBytes))
)
