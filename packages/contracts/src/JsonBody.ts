import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as Schema from "effect/Schema"
import { PayloadTooLarge } from "./HttpErrors.ts"

/**
 * Rejects a JSON body that does not parse with the same typed 400 `HttpApiDecodeError` as a body
 * of the wrong shape (HttpApi's own payload decoding answers it without a body), and a body over the
 * service's limit with a typed 413 `PayloadTooLarge`, before reading it whole. Add it to a group
 * with `.middleware(JsonBody)`; servers provide `@kpipe/service-kit` `JsonBody.layer`, clients need nothing.
 */
export class JsonBody extends HttpApiMiddleware.Tag<JsonBody>()("@kpipe/contracts/JsonBody", {
  failure: Schema.Union(HttpApiDecodeError, PayloadTooLarge)
}) {}
