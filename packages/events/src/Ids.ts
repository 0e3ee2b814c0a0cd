import * as Schema from "effect/Schema"

/** The idempotency key of an event. */
export const EventId = Schema.UUID.pipe(Schema.brand("EventId"))
export type EventId = typeof EventId.Type

const positiveId = <B extends string>(brand: B) => Schema.Int.pipe(Schema.positive(), Schema.brand(brand))

export const MemberId = positiveId("MemberId")
export type MemberId = typeof MemberId.Type

export const AccountId = positiveId("AccountId")
export type AccountId = typeof AccountId.Type

export const UserId = positiveId("UserId")
export type UserId = typeof UserId.Type

export const CouponId = positiveId("CouponId")
export type CouponId = typeof CouponId.Type

export const OrderId = positiveId("OrderId")
export type OrderId = typeof OrderId.Type

export const ProductId = positiveId("ProductId")
export type ProductId = typeof ProductId.Type

export const SessionId = Schema.NonEmptyString.pipe(Schema.brand("SessionId"))
export type SessionId = typeof SessionId.Type
