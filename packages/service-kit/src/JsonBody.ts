import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { HttpServerRequest } from "@effect/platform/HttpServerRequest"
import { JsonBody } from "@kpipe/contracts/JsonBody"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** Implements the contracts' `JsonBody` middleware: a body that does not parse is a typed 400, like a body of the wrong shape. */
export const layer: Layer.Layer<JsonBody> = Layer.succeed(
  JsonBody,
  Effect.gen(function*() {
    const request = yield* HttpServerRequest
    if (!HttpMethod.hasBody(request.method)) return
    const contentType = (request.headers["content-type"] ?? "application/json").toLowerCase()
    if (!contentType.includes("application/json")) return
    // The request caches the body text, so payload decoding reads it again for free.
    yield* request.json.pipe(
      Effect.catchAll((error) => {
        const reason = error.cause instanceof Error ? error.cause.message : error.message
        const message = `The body is not valid JSON: ${reason}`
        return new HttpApiDecodeError({ issues: [{ _tag: "Type", path: [], message }], message })
      })
    )
  })
)
