import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { HttpServerRequest } from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * Rejects a JSON body that does not parse with the same typed 400 `HttpApiDecodeError` as a body
 * of the wrong shape (HttpApi's own payload decoding answers it without a body). Add it to a group
 * with `.middleware(JsonBody)`; server-side only, `HttpApiClient` does not need `layer`.
 */
export class JsonBody extends HttpApiMiddleware.Tag<JsonBody>()("@kpipe/service-kit/JsonBody", {
  failure: HttpApiDecodeError
}) {}

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
