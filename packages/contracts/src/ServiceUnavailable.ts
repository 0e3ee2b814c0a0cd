import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Schema from "effect/Schema"

/**
 * The one answer to an infrastructure fault (database, broker or Redis not answering) on every
 * service: 503, nothing written, safe to retry — except when the connection was lost while
 * committing, where the message says the outcome is unknown (retry with the same Idempotency-Key
 * where the endpoint takes one). `@kpipe/service-kit` `Unavailable` maps the clients' typed errors to it.
 */
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({
    status: 503,
    description:
      "A database, broker or Redis did not answer; nothing was changed, try again (unless the message says the outcome is unknown)"
  })
) {}
