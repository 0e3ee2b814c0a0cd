import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"

/** order-service's errors: each has its own status, and its tag tells clients what happened. */

export class ProductNotFound extends Schema.TaggedError<ProductNotFound>()(
  "ProductNotFound",
  { productId: Ids.ProductId, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class InvalidQuantity extends Schema.TaggedError<InvalidQuantity>()(
  "InvalidQuantity",
  { quantity: Schema.Number, min: Schema.Int, max: Schema.Int, message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

export class OrderNotFound extends Schema.TaggedError<OrderNotFound>()(
  "OrderNotFound",
  { orderId: Ids.OrderId, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** Shared with commerce-service's `createOrder`. */
export { IdempotencyKeyReused } from "./Idempotency.ts"
