import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Schema from "effect/Schema"

/**
 * What every service answers, whatever the route, to a request it refuses before any endpoint sees
 * it: each a JSON body with a `_tag`, like the endpoints' own errors.
 */

/** The body is over the service's limit (`HTTP_MAX_BODY_BYTES`); it was not read whole. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String, maxBytes: Schema.Int },
  HttpApiSchema.annotations({ status: 413 })
) {}

/** No endpoint has this method and path. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The request could not be parsed as HTTP (sent by the server itself, before routing). */
export class MalformedRequest extends Schema.TaggedError<MalformedRequest>()(
  "MalformedRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The request's headers are over the service's limit (`HTTP_MAX_HEADER_BYTES`). */
export class HeadersTooLarge extends Schema.TaggedError<HeadersTooLarge>()(
  "HeadersTooLarge",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 431 })
) {}

/** The request did not arrive whole in time (`HTTP_REQUEST_TIMEOUT`, `HTTP_HEADERS_TIMEOUT`). */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()(
  "RequestTimeout",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 408 })
) {}
