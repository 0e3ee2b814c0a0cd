import * as Schema from "effect/Schema"

/** The idempotency key of an event. */
export const EventId = Schema.UUID.pipe(Schema.brand("EventId"))
export type EventId = typeof EventId.Type

export const MemberId = Schema.Int.pipe(Schema.positive(), Schema.brand("MemberId"))
export type MemberId = typeof MemberId.Type

export const AccountId = Schema.Int.pipe(Schema.positive(), Schema.brand("AccountId"))
export type AccountId = typeof AccountId.Type

export const UserId = Schema.Int.pipe(Schema.positive(), Schema.brand("UserId"))
export type UserId = typeof UserId.Type

export const CouponId = Schema.Int.pipe(Schema.positive(), Schema.brand("CouponId"))
export type CouponId = typeof CouponId.Type

export const OrderId = Schema.Int.pipe(Schema.positive(), Schema.brand("OrderId"))
export type OrderId = typeof OrderId.Type

export const ProductId = Schema.Int.pipe(Schema.positive(), Schema.brand("ProductId"))
export type ProductId = typeof ProductId.Type

export const SessionId = Schema.NonEmptyString.pipe(Schema.brand("SessionId"))
export type SessionId = typeof SessionId.Type
