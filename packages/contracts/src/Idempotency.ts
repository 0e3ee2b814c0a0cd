import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"

/**
 * The `Idempotency-Key` of the endpoints that create an order (order-service's `placeOrder`,
 * commerce-service's `createOrder`): optional; a client that retries a request whose outcome it does
 * not know (a timeout, a 503 after the connection was lost at COMMIT) sends the same key again and
 * gets the order the first request created, never a second one.
 */

export const idempotencyKeyHeader = "idempotency-key"

/** 1 to 200 characters; an empty or longer key is a typed 400. */
export const IdempotencyKey = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)).annotations({
  description: "Same key and body → the same order, never two; same key, other body → 422"
})

export const IdempotencyKeyHeaders = Schema.Struct({
  [idempotencyKeyHeader]: Schema.optional(IdempotencyKey)
})

export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()(
  "IdempotencyKeyReused",
  { idempotencyKey: Schema.String, orderId: Ids.OrderId, message: Schema.String },
  HttpApiSchema.annotations({
    status: 422,
    description: "The Idempotency-Key was used before with another body; nothing was created"
  })
) {}
