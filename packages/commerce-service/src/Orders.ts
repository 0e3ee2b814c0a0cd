import { SqlClient } from "@effect/sql/SqlClient"
import {
  type CreateOrderRequest,
  Order,
  OrderNotFound,
  OrderStateConflict,
  type OrderStatus,
  ProductNotFound
} from "@kpipe/contracts/CommerceApi"
import { IdempotencyKeyReused } from "@kpipe/contracts/Idempotency"
import { type Ids, ProductMetricsEvents } from "@kpipe/events"
import { Outbox } from "@kpipe/pipeline"
import * as Arr from "effect/Array"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { changeTime, ItemRow, newEventId, OrderRow, ProductRow } from "./internal/rows.ts"
import * as Topics from "./Topics.ts"

const decodeOrder = Schema.decodeUnknown(OrderRow)
const decodeItems = Schema.decodeUnknown(Schema.NonEmptyArray(ItemRow))
const decodeProducts = Schema.decodeUnknown(Schema.Array(ProductRow))

/** Which statuses each change starts from. */
const allowedFrom: Record<"pay" | "cancel", ReadonlyArray<OrderStatus>> = {
  pay: ["CREATED"],
  cancel: ["CREATED", "PAID"]
}

/** Same lines, in the same order, with the same quantities: a retry of the request that created `order`. */
const sameBody = (order: Order, request: CreateOrderRequest) =>
  order.items.length === request.items.length &&
  order.items.every((item, i) =>
    item.productId === request.items[i]!.productId && item.quantity === request.items[i]!.quantity
  )

/**
 * The order lifecycle: created (with its lines priced from the catalog), paid, cancelled. Each
 * change commits together with its event on `order-events` (key: the order). A user sees and
 * changes only their own orders. A creation may carry the client's idempotency key: the same key
 * and body again answer the order it created, never a second one (`create`).
 */
export class Orders extends Effect.Service<Orders>()("@kpipe/commerce-service/Orders", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const topics = yield* Topics.resolve

    const notFound = (orderId: Ids.OrderId) => new OrderNotFound({ orderId, message: `Order ${orderId} not found.` })

    const withItems = (order: OrderRow) =>
      Effect.map(
        Effect.flatMap(
          sql`SELECT product_id, quantity, amount FROM order_items WHERE order_id = ${order.orderId} ORDER BY line`,
          decodeItems
        ),
        (items) => new Order({ ...order, items })
      )

    const load = (orderId: Ids.OrderId, userId: Ids.UserId, lock: boolean) =>
      Effect.gen(function*() {
        const rows = yield* sql`
          SELECT * FROM orders WHERE order_id = ${orderId} ${lock ? sql.literal("FOR UPDATE") : sql.literal("")}`
        if (rows.length === 0) return yield* notFound(orderId)
        const order = yield* decodeOrder(rows[0])
        if (order.userId !== userId) return yield* notFound(orderId)
        return yield* withItems(order)
      })

    /** The order the user created with `key`, as it is now. */
    const byKey = (userId: Ids.UserId, key: string) =>
      Effect.gen(function*() {
        const rows = yield* sql`SELECT * FROM orders WHERE user_id = ${userId} AND idempotency_key = ${key}`
        if (rows.length === 0) return Option.none<Order>()
        return Option.some(yield* withItems(yield* decodeOrder(rows[0])))
      })

    /**
     * Creates the order, or, when `idempotencyKey` was used before by this user, answers the order it
     * created if the body is the same (nothing written, no second event) and `IdempotencyKeyReused`
     * otherwise. Concurrent requests with one key queue on the unique index: the first inserts, the
     * others' `ON CONFLICT DO NOTHING` waits for its commit and they read its order back (or insert,
     * if it rolled back).
     */
    const create = Effect.fn("Orders.create")(function*(
      userId: Ids.UserId,
      request: CreateOrderRequest,
      idempotencyKey: Option.Option<string>
    ) {
      const key = Option.getOrNull(idempotencyKey)
      yield* Effect.annotateCurrentSpan({
        "user.id": userId,
        "order.lines": request.items.length,
        "order.idempotency_key": key !== null
      })
      const replay = (existing: Order) =>
        sameBody(existing, request) ? Effect.succeed(existing) : Effect.fail(
          new IdempotencyKeyReused({
            idempotencyKey: key ?? "",
            orderId: existing.orderId,
            message: "This Idempotency-Key was used for another order body."
          })
        )
      return yield* sql.withTransaction(Effect.gen(function*() {
        const ids = request.items.map((item) => item.productId)
        const products = yield* decodeProducts(yield* sql`SELECT * FROM products WHERE ${sql.in("product_id", ids)}`)
        const prices = new Map(products.map((product) => [product.productId, product.price]))
        const items = Arr.map(request.items, (item) => ({
          productId: item.productId,
          quantity: item.quantity,
          amount: BigDecimal.normalize(
            BigDecimal.multiply(
              prices.get(item.productId) ?? BigDecimal.fromBigInt(0n),
              BigDecimal.fromNumber(item.quantity)
            )
          )
        }))
        const missing = ids.find((id) => !prices.has(id))
        if (missing !== undefined) {
          // A key already used answers for its order's body, whatever this one names.
          const earlier = key === null ? Option.none() : yield* byKey(userId, key)
          if (Option.isSome(earlier)) return yield* replay(earlier.value)
          return yield* new ProductNotFound({ productId: missing, message: `Product ${missing} does not exist.` })
        }
        const total = BigDecimal.normalize(BigDecimal.sumAll(items.map((item) => item.amount)))
        const at = DateTime.toDateUtc(yield* DateTime.now)
        const [inserted] = yield* sql`
          INSERT INTO orders ${
          sql.insert({
            userId,
            status: "CREATED",
            total: BigDecimal.format(total),
            createdAt: at,
            updatedAt: at,
            idempotencyKey: key
          })
        }
          ON CONFLICT (user_id, idempotency_key) DO NOTHING
          RETURNING *`
        if (inserted === undefined) {
          // The key was used before, perhaps by a request that was in flight: the insert waited for its commit.
          const existing = key === null ? Option.none() : yield* byKey(userId, key)
          return yield* Option.match(existing, {
            onNone: () => Effect.dieMessage("idempotency key conflict without an order"),
            onSome: replay
          })
        }
        const order = yield* decodeOrder(inserted)
        yield* sql`
          INSERT INTO order_items (order_id, line, product_id, quantity, amount)
          SELECT ${order.orderId}, line, product_id, quantity, amount::numeric
          FROM unnest(
            ${items.map((_, i) => i)}::int[], ${items.map((item) => item.productId)}::bigint[],
            ${items.map((item) => item.quantity)}::int[], ${items.map((item) => BigDecimal.format(item.amount))}::text[]
          ) AS t(line, product_id, quantity, amount)`
        yield* Outbox.append(
          topics.orders,
          new ProductMetricsEvents.OrderCreated({
            eventId: newEventId(),
            orderId: order.orderId,
            userId,
            items,
            occurredAt: order.createdAt
          })
        )
        return new Order({ ...order, items })
      }))
    })

    const get = Effect.fn("Orders.get")(function*(userId: Ids.UserId, orderId: Ids.OrderId) {
      return yield* load(orderId, userId, false)
    })

    const change = (change: "pay" | "cancel", userId: Ids.UserId, orderId: Ids.OrderId) =>
      sql.withTransaction(Effect.gen(function*() {
        const current = yield* load(orderId, userId, true)
        if (!allowedFrom[change].includes(current.status)) {
          return yield* new OrderStateConflict({
            orderId,
            status: current.status,
            message: `Order ${orderId} is ${current.status}; it cannot be ${change === "pay" ? "paid" : "cancelled"}.`
          })
        }
        const status: OrderStatus = change === "pay" ? "PAID" : "CANCELLED"
        const at = changeTime(yield* DateTime.now, current.updatedAt)
        yield* sql`UPDATE orders SET status = ${status}, updated_at = ${
          DateTime.toDateUtc(at)
        } WHERE order_id = ${orderId}`
        const common = { eventId: newEventId(), orderId, occurredAt: at }
        yield* Outbox.append(
          topics.orders,
          change === "pay"
            ? new ProductMetricsEvents.PaymentCompleted({ ...common, amount: current.total })
            : new ProductMetricsEvents.OrderCancelled({ ...common, items: current.items })
        )
        return new Order({ ...current, status, updatedAt: at })
      }))

    const pay = Effect.fn("Orders.pay")(function*(userId: Ids.UserId, orderId: Ids.OrderId) {
      yield* Effect.annotateCurrentSpan({ "user.id": userId, "order.id": orderId })
      return yield* change("pay", userId, orderId)
    })

    const cancel = Effect.fn("Orders.cancel")(function*(userId: Ids.UserId, orderId: Ids.OrderId) {
      yield* Effect.annotateCurrentSpan({ "user.id": userId, "order.id": orderId })
      return yield* change("cancel", userId, orderId)
    })

    return { create, get, pay, cancel } as const
  })
}) {}
