import type { ProductMetricsEvents } from "@kpipe/events"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import { type Period, startOf } from "./internal/periods.ts"

/**
 * What a history of catalog and order events means, as facts keyed by their own ids, from which
 * every figure is derived. Applying any interleaving of a history, with any event repeated, gives
 * the same facts, hence the same metrics, as applying it once in order:
 *
 * - a like is the latest state of one user's like of one product, latest by `(occurredAt, liked)`
 *   (commerce-service makes `occurredAt` strictly increase per user and product); an older event
 *   arriving late changes nothing;
 * - a view is its event id;
 * - an order is what its events said: created (with its lines and time), cancelled (with its time),
 *   paid. Each is set once; repeating it changes nothing.
 *
 * Figures: likes = standing likes; views = distinct views; sales = units and amounts of orders
 * created and not cancelled; cancellations = cancelled orders containing the product. So a figure
 * never goes below zero: a decrement only ever takes back a contribution that was made (an unlike
 * before its like, or a cancellation before its order, takes back nothing, and the late like or
 * order then adds nothing either).
 *
 * This module is the reference the SQL store (`ProductMetricsStore`) must agree with; the tests
 * and the benchmark compare the two.
 */

export interface Figures {
  likes: number
  views: number
  salesCount: number
  salesAmount: BigDecimal.BigDecimal
  cancellations: number
}

interface Like {
  readonly productId: number
  readonly liked: boolean
  readonly at: number
}

interface OrderFacts {
  created?: { readonly at: number; readonly items: ReadonlyArray<ProductMetricsEvents.OrderItem> }
  cancelled?: { readonly at: number; readonly items: ReadonlyArray<ProductMetricsEvents.OrderItem> }
  paid?: number
}

export interface State {
  readonly likes: Map<string, Like>
  readonly views: Map<string, { readonly productId: number; readonly at: number }>
  readonly orders: Map<number, OrderFacts>
}

export type Event = ProductMetricsEvents.CatalogEvent | ProductMetricsEvents.OrderEvent

export const empty = (): State => ({ likes: new Map(), views: new Map(), orders: new Map() })

/** `a` wins over `b` as the latest state of a like. */
export const newer = (
  a: { readonly at: number; readonly liked: boolean },
  b: { readonly at: number; readonly liked: boolean }
) => a.at > b.at || (a.at === b.at && a.liked && !b.liked)

const ms = (at: DateTime.Utc) => DateTime.toEpochMillis(at)

/** Adds one event's facts to `state` (in place) and returns it. */
export const apply = (state: State, event: Event): State => {
  switch (event.type) {
    case "LikeAdded":
    case "LikeRemoved": {
      const key = `${event.productId}:${event.userId}`
      const next = { productId: event.productId, liked: event.type === "LikeAdded", at: ms(event.occurredAt) }
      const held = state.likes.get(key)
      if (held === undefined || newer(next, held)) state.likes.set(key, next)
      return state
    }
    case "ProductViewed": {
      state.views.set(event.eventId, { productId: event.productId, at: ms(event.occurredAt) })
      return state
    }
    default: {
      const facts = state.orders.get(event.orderId) ?? {}
      if (event.type === "OrderCreated") facts.created ??= { at: ms(event.occurredAt), items: event.items }
      else if (event.type === "OrderCancelled") facts.cancelled ??= { at: ms(event.occurredAt), items: event.items }
      else facts.paid ??= ms(event.occurredAt)
      state.orders.set(event.orderId, facts)
      return state
    }
  }
}

export const zero = (): Figures => ({
  likes: 0,
  views: 0,
  salesCount: 0,
  salesAmount: BigDecimal.fromBigInt(0n),
  cancellations: 0
})

export interface Metrics {
  readonly totals: Map<number, Figures>
  /** Keyed `period|start|productId`. */
  readonly buckets: Map<string, Figures>
}

export const bucketKey = (period: Period, start: string, productId: number) => `${period}|${start}|${productId}`

/** The figures `state`'s facts define, per product and per product and day / ISO week. */
export const metrics = (state: State): Metrics => {
  const totals = new Map<number, Figures>()
  const buckets = new Map<string, Figures>()
  const add = (productId: number, at: number, f: (figures: Figures) => void) => {
    let total = totals.get(productId)
    if (total === undefined) totals.set(productId, total = zero())
    f(total)
    for (const period of ["day", "week"] as const) {
      const key = bucketKey(period, startOf(period, at), productId)
      let bucket = buckets.get(key)
      if (bucket === undefined) buckets.set(key, bucket = zero())
      f(bucket)
    }
  }
  for (const like of state.likes.values()) {
    if (like.liked) add(like.productId, like.at, (f) => f.likes++)
  }
  for (const view of state.views.values()) add(view.productId, view.at, (f) => f.views++)
  for (const order of state.orders.values()) {
    if (order.created !== undefined && order.cancelled === undefined) {
      for (const item of order.created.items) {
        add(item.productId, order.created.at, (f) => {
          f.salesCount += item.quantity
          f.salesAmount = BigDecimal.sum(f.salesAmount, item.amount)
        })
      }
    }
    if (order.cancelled !== undefined) {
      for (const productId of new Set(order.cancelled.items.map((item) => item.productId))) {
        add(productId, order.cancelled.at, (f) => f.cancellations++)
      }
    }
  }
  for (const figures of [...totals.values(), ...buckets.values()]) {
    figures.salesAmount = BigDecimal.normalize(figures.salesAmount)
  }
  return { totals, buckets }
}

/** The metrics of a history, applied in the order given. */
export const fold = (events: Iterable<Event>): Metrics => {
  const state = empty()
  for (const event of events) apply(state, event)
  return metrics(state)
}
