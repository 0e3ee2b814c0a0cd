import { Ids, ProductMetricsEvents } from "@kpipe/events"
import type { MetricsModel } from "@kpipe/metrics-service"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as FastCheck from "effect/FastCheck"

type Event = MetricsModel.Event

export interface Shape {
  readonly products: number
  readonly users: number
  readonly orders: number
  /** Spread of event times from `base`, so that histories cross day and week boundaries. */
  readonly days: number
  readonly base: number
}

const minute = 60_000
const price = (productId: number) => BigDecimal.unsafeFromString(`${productId}.25`)

let uuidCounter = 0
/** A UUID unique to this process and run (event ids of generated histories must not collide across runs). */
const uuid = (seed: number) => {
  const hex = ((uuidCounter++).toString(16) + seed.toString(16)).padStart(12, "0").slice(-12)
  return Ids.EventId.make(`${crypto.randomUUID().slice(0, 24)}${hex}`)
}

const at = (ms: number) => DateTime.unsafeMake(ms)

/**
 * A history as commerce-service could write it, in order: per user and product alternating likes
 * and unlikes with increasing times, views, and orders created, maybe paid, maybe cancelled.
 */
export const history = (shape: Shape) => {
  const span = shape.days * 24 * 60
  const time = FastCheck.integer({ min: 0, max: span }).map((m) => shape.base + m * minute)
  const likeRun = FastCheck.record({
    productId: FastCheck.integer({ min: 1, max: shape.products }),
    userId: FastCheck.integer({ min: 1, max: shape.users }),
    times: FastCheck.uniqueArray(time, { minLength: 1, maxLength: 4 })
  })
  const view = FastCheck.record({ productId: FastCheck.integer({ min: 1, max: shape.products }), at: time })
  const order = FastCheck.record({
    lines: FastCheck.uniqueArray(
      FastCheck.record({
        productId: FastCheck.integer({ min: 1, max: shape.products }),
        quantity: FastCheck.integer({ min: 1, max: 5 })
      }),
      { minLength: 1, maxLength: 3, selector: (line) => line.productId }
    ),
    at: time,
    paid: FastCheck.boolean(),
    cancelled: FastCheck.boolean()
  })
  return FastCheck.record({
    likes: FastCheck.uniqueArray(likeRun, {
      maxLength: shape.products * shape.users,
      selector: (r) => `${r.productId}:${r.userId}`
    }),
    views: FastCheck.array(view, { maxLength: 30 }),
    orders: FastCheck.array(order, { maxLength: shape.orders })
  }).map(({ likes, orders, views }) => {
    const events: Array<Event> = []
    for (const run of likes) {
      const times = [...run.times].sort((a, b) => a - b)
      times.forEach((ms, i) => {
        const fields = {
          eventId: uuid(1),
          productId: Ids.ProductId.make(run.productId),
          userId: Ids.UserId.make(run.userId),
          occurredAt: at(ms)
        }
        events.push(
          i % 2 === 0 ? new ProductMetricsEvents.LikeAdded(fields) : new ProductMetricsEvents.LikeRemoved(fields)
        )
      })
    }
    for (const v of views) {
      events.push(
        new ProductMetricsEvents.ProductViewed({
          eventId: uuid(2),
          productId: Ids.ProductId.make(v.productId),
          occurredAt: at(v.at)
        })
      )
    }
    orders.forEach((o, i) => {
      const orderId = Ids.OrderId.make(1 + i)
      const items = o.lines.map((line) => ({
        productId: Ids.ProductId.make(line.productId),
        quantity: line.quantity,
        amount: BigDecimal.normalize(BigDecimal.multiply(price(line.productId), BigDecimal.fromNumber(line.quantity)))
      })) as unknown as readonly [ProductMetricsEvents.OrderItem, ...Array<ProductMetricsEvents.OrderItem>]
      events.push(
        new ProductMetricsEvents.OrderCreated({
          eventId: uuid(3),
          orderId,
          userId: Ids.UserId.make(1),
          items,
          occurredAt: at(o.at)
        })
      )
      if (o.paid) {
        events.push(
          new ProductMetricsEvents.PaymentCompleted({
            eventId: uuid(4),
            orderId,
            amount: BigDecimal.normalize(BigDecimal.sumAll(items.map((item) => item.amount))),
            occurredAt: at(o.at + minute)
          })
        )
      }
      if (o.cancelled) {
        events.push(
          new ProductMetricsEvents.OrderCancelled({
            eventId: uuid(5),
            orderId,
            items,
            occurredAt: at(o.at + 2 * minute)
          })
        )
      }
    })
    return events.sort((a, b) => DateTime.toEpochMillis(a.occurredAt) - DateTime.toEpochMillis(b.occurredAt))
  })
}

/** A history with each event delivered 1 to 3 times, in any order across and within keys. */
export const messedUp = (shape: Shape) =>
  history(shape).chain((events) =>
    FastCheck.array(FastCheck.integer({ min: 1, max: 3 }), { minLength: events.length, maxLength: events.length })
      .chain((copies) => {
        const deliveries = events.flatMap((event, i) => Array.from({ length: copies[i]! }, () => event))
        return FastCheck.shuffledSubarray(deliveries, { minLength: deliveries.length })
      })
      .map((deliveries) => ({ events, deliveries }))
  )

export const defaultShape: Shape = { products: 4, users: 3, orders: 6, days: 10, base: Date.UTC(2030, 0, 3, 20) }

/** Figures as plain comparable values. */
export const plain = (figures: {
  readonly likes: number
  readonly views: number
  readonly salesCount: number
  readonly salesAmount: BigDecimal.BigDecimal
  readonly cancellations: number
}) => [
  figures.likes,
  figures.views,
  figures.salesCount,
  BigDecimal.format(BigDecimal.normalize(figures.salesAmount)),
  figures.cancellations
]
