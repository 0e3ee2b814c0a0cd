import { Ids, Money } from "@kpipe/events"
import * as DateTime from "effect/DateTime"
import * as Schema from "effect/Schema"

/** A BIGINT column: pg returns it as text. */
const bigintId = <A, R>(id: Schema.Schema<A, number, R>) =>
  Schema.Union(Schema.NumberFromString, Schema.Number).pipe(Schema.compose(id))

export const ProductRow = Schema.Struct({
  productId: bigintId(Ids.ProductId),
  name: Schema.String,
  price: Money.Money,
  createdAt: Schema.DateTimeUtcFromDate
})

export const OrderRow = Schema.Struct({
  orderId: bigintId(Ids.OrderId),
  userId: bigintId(Ids.UserId),
  status: Schema.Literal("CREATED", "PAID", "CANCELLED"),
  total: Money.Money,
  createdAt: Schema.DateTimeUtcFromDate,
  updatedAt: Schema.DateTimeUtcFromDate
})
export type OrderRow = typeof OrderRow.Type

export const ItemRow = Schema.Struct({
  productId: bigintId(Ids.ProductId),
  quantity: Schema.Int,
  amount: Money.Money
})

/**
 * A BIGINT count: pg returns it as text. Past 2^53 − 1 it would not survive as a number: it fails to
 * decode instead of being rounded (`Schema.Int` is a safe integer, and no text past it parses below it).
 */
const bigintCount = Schema.Union(Schema.NumberFromString, Schema.Number).pipe(Schema.compose(Schema.NonNegativeInt))

export const TotalsRow = Schema.Struct({
  productId: bigintId(Ids.ProductId),
  likes: bigintCount,
  views: bigintCount,
  salesCount: bigintCount,
  salesAmount: Money.MoneySum,
  cancellations: bigintCount,
  days: Schema.Array(Schema.Struct({
    day: Schema.String,
    likes: bigintCount,
    views: bigintCount,
    salesCount: bigintCount,
    salesAmount: Money.MoneySum,
    cancellations: bigintCount
  }))
})

export const TimeRow = Schema.Struct({ at: Schema.DateTimeUtcFromDate })

/**
 * Now, to the millisecond (what events carry), but always after `previous`: a row's change times
 * strictly increase even within one millisecond or when the clock steps back.
 */
export const changeTime = (now: DateTime.Utc, previous?: DateTime.Utc) =>
  previous === undefined || DateTime.greaterThan(now, previous) ? now : DateTime.add(previous, { millis: 1 })

export const newEventId = () => Ids.EventId.make(crypto.randomUUID())
