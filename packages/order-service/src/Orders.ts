import { SqlClient } from "@effect/sql/SqlClient"
import { OrderErrors, OrderModels } from "@kpipe/contracts"
import { Ids, OrderEvents } from "@kpipe/events"
import { Outbox, pgText } from "@kpipe/pipeline"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import { Config } from "./Config.ts"
import * as Batcher from "./internal/batcher.ts"
import { money, type OrderRow, pendingNotifications, selectOrders, toOrder } from "./internal/rows.ts"
import { unchecked } from "./internal/unchecked.ts"
import { OrderTopics } from "./Topics.ts"

const eventId = () => Ids.EventId.make(randomUUID())

/** An order to place. */
interface Placing {
  readonly userId: Ids.UserId
  readonly productId: Ids.ProductId
  readonly quantity: number
  readonly key: string | null
}

interface Placed {
  readonly orderId: string
  readonly createdAt: Date
  readonly unitPrice: string
  readonly amount: string
}

interface Changed {
  readonly orderId: string
  readonly userId: string
  readonly productId: string
  readonly quantity: number
  readonly amount: string
}

/**
 * The orders: placed over HTTP (the order row and its `OrderCreated` commit together through the
 * outbox), then moved on by the inventory's answer, each move announced on `order.status` in the
 * same transaction.
 */
export class Orders extends Effect.Service<Orders>()("@kpipe/order-service/Orders", {
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient
    const topics = yield* OrderTopics
    const config = yield* Config

    const pending = (orderId: Ids.OrderId, request: Placing, row: Placed) => {
      const createdAt = DateTime.unsafeFromDate(row.createdAt)
      return new OrderModels.Order({
        orderId,
        userId: request.userId,
        productId: request.productId,
        quantity: request.quantity,
        unitPrice: money(row.unitPrice),
        amount: money(row.amount),
        status: "PENDING",
        reason: null,
        notifications: pendingNotifications,
        createdAt,
        updatedAt: createdAt
      }, unchecked)
    }

    /**
     * The orders of concurrent requests, inserted with one statement and announced with one outbox
     * append, in one transaction. A request whose product is unknown or whose idempotency key was
     * used before gets `None`: it is answered on its own (`placeOne`). Rows are taken in key order,
     * so concurrent batches (other replicas) queue on a reused key instead of deadlocking.
     */
    const placeBatch = (requests: ReadonlyArray<Placing>, restore: Batcher.Restore) =>
      sql.withTransaction(restore(Effect.gen(function*() {
        const rows = yield* sql<Placed & { userId: string; productId: string; quantity: number; key: string | null }>`
          INSERT INTO orders (user_id, product_id, quantity, unit_price, amount, idempotency_key)
          SELECT r.user_id, p.product_id, r.quantity, p.price, p.price * r.quantity, r.key
          FROM unnest(${requests.map((r) => r.userId)}::bigint[], ${requests.map((r) => r.productId)}::bigint[],
                      ${requests.map((r) => r.quantity)}::int[], ${requests.map((r) => r.key)}::text[])
            AS r(user_id, product_id, quantity, key)
          JOIN products p ON p.product_id = r.product_id
          ORDER BY r.user_id, r.key
          ON CONFLICT (user_id, idempotency_key) DO NOTHING
          RETURNING order_id, user_id, product_id, quantity, idempotency_key AS key, created_at,
                    unit_price::text AS unit_price, amount::text AS amount`
        // Requests alike (same user, product, quantity and key, or no key) are interchangeable.
        const byRequest = new Map<string, Array<Placed>>()
        const identity = (userId: number, productId: number, quantity: number, key: string | null) =>
          `${userId}/${productId}/${quantity}/${key === null ? "" : `k${key}`}`
        for (const row of rows) {
          const id = identity(Number(row.userId), Number(row.productId), row.quantity, row.key)
          const alike = byRequest.get(id)
          if (alike === undefined) byRequest.set(id, [row])
          else alike.push(row)
        }
        const answers = requests.map((request) => {
          const row = byRequest.get(identity(request.userId, request.productId, request.quantity, request.key))?.pop()
          return row === undefined ?
            Option.none() :
            Option.some(pending(Ids.OrderId.make(Number(row.orderId)), request, row))
        })
        yield* Outbox.append(
          topics.orderCreated,
          ...answers.flatMap((answer) =>
            Option.isNone(answer) ? [] : [
              new OrderEvents.OrderCreated({
                eventId: eventId(),
                orderId: answer.value.orderId,
                userId: answer.value.userId,
                productId: answer.value.productId,
                quantity: answer.value.quantity,
                amount: answer.value.amount,
                createdAt: answer.value.createdAt
              }, unchecked)
            ]
          )
        )
        return answers
      }))).pipe(Effect.withSpan("Orders.placeBatch", { attributes: { size: requests.length } }))

    const placeTogether = yield* Batcher.make(placeBatch, { maxBatch: 500, workers: 2 })

    const byKey = (userId: Ids.UserId, key: string) =>
      Effect.map(
        sql<OrderRow>`${selectOrders(sql)} WHERE o.user_id = ${userId} AND o.idempotency_key = ${key}`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toOrder)
      )

    const place = Effect.fn("Orders.place")(function*(
      userId: Ids.UserId,
      request: OrderModels.PlaceOrderRequest,
      idempotencyKey: Option.Option<string>
    ) {
      const { productId, quantity } = request
      if (quantity < 1 || quantity > config.maxQuantity) {
        return yield* new OrderErrors.InvalidQuantity({
          quantity,
          min: 1,
          max: config.maxQuantity,
          message: `quantity must be 1 to ${config.maxQuantity}, got ${quantity}.`
        })
      }
      const key = Option.getOrNull(idempotencyKey)
      const replay = (existing: OrderModels.Order) =>
        existing.productId === productId && existing.quantity === quantity
          ? Effect.succeed(existing)
          : Effect.fail(
            new OrderErrors.IdempotencyKeyReused({
              idempotencyKey: key!,
              orderId: existing.orderId,
              message: "This Idempotency-Key was used for another order body."
            })
          )
      const placed = yield* placeTogether({ userId, productId, quantity, key })
      if (Option.isSome(placed)) return placed.value
      // Unknown product, or the key was used before (perhaps by a request still in flight: the insert waits for it).
      return yield* sql.withTransaction(Effect.gen(function*() {
        const known = yield* sql`SELECT 1 FROM products WHERE product_id = ${productId}`
        if (known.length === 0) {
          // A key already used for an order answers for that order's body, whatever this one names.
          const earlier = key === null ? Option.none() : yield* byKey(userId, key)
          if (Option.isSome(earlier)) return yield* replay(earlier.value)
          return yield* new OrderErrors.ProductNotFound({ productId, message: `No product ${productId}.` })
        }
        const [inserted] = yield* sql<Placed>`
          INSERT INTO orders (user_id, product_id, quantity, unit_price, amount, idempotency_key)
          SELECT ${userId}, p.product_id, ${quantity}, p.price, p.price * ${quantity}, ${key}
          FROM products p WHERE p.product_id = ${productId}
          ON CONFLICT (user_id, idempotency_key) DO NOTHING
          RETURNING order_id, created_at, unit_price::text AS unit_price, amount::text AS amount`
        if (inserted === undefined) {
          const existing = yield* byKey(userId, key!)
          return yield* Option.match(existing, {
            onNone: () => Effect.dieMessage("idempotency key conflict without an order"),
            onSome: replay
          })
        }
        // The earlier order was rolled back meanwhile: this one is new after all.
        const order = pending(
          Ids.OrderId.make(Number(inserted.orderId)),
          { userId, productId, quantity, key },
          inserted
        )
        yield* Outbox.append(
          topics.orderCreated,
          new OrderEvents.OrderCreated({
            eventId: eventId(),
            orderId: order.orderId,
            userId,
            productId,
            quantity,
            amount: order.amount,
            createdAt: order.createdAt
          }, unchecked)
        )
        return order
      }))
    })

    const get = Effect.fn("Orders.get")(function*(userId: Ids.UserId, orderId: Ids.OrderId) {
      const [row] = yield* sql<OrderRow>`${selectOrders(sql)} WHERE o.order_id = ${orderId} AND o.user_id = ${userId}`
      if (row === undefined) return yield* new OrderErrors.OrderNotFound({ orderId, message: `No order ${orderId}.` })
      return toOrder(row)
    })

    const list = Effect.fn("Orders.list")(function*(userId: Ids.UserId, page: number, pageSize: number) {
      const rows = yield* sql<OrderRow>`
        ${selectOrders(sql)} WHERE o.user_id = ${userId}
        ORDER BY o.order_id DESC LIMIT ${pageSize} OFFSET ${(page - 1) * pageSize}`
      const [count] = yield* sql<{ total: number }>`SELECT count(*)::int AS total FROM orders WHERE user_id = ${userId}`
      return new OrderModels.OrderPage({ items: rows.map(toOrder), page, pageSize, total: count!.total })
    })

    const products = Effect.fn("Orders.products")(function*() {
      const rows = yield* sql<{ productId: string; name: string; price: string; available: number }>`
        SELECT p.product_id, p.name, p.price::text AS price, COALESCE(i.stock, 0) AS available
        FROM products p LEFT JOIN inventory i USING (product_id) ORDER BY p.product_id`
      return new OrderModels.ProductList({
        items: rows.map((row) =>
          new OrderModels.Product({
            productId: Ids.ProductId.make(Number(row.productId)),
            name: row.name,
            price: money(row.price),
            available: row.available
          })
        )
      })
    })

    /** Moves PENDING (or NEEDS_ATTENTION) orders on; returns the moved ones in the order of `orderIds`. */
    const move = (
      orderIds: ReadonlyArray<number>,
      status: "CONFIRMED" | "CANCELLED",
      reason: string | null
    ) =>
      Effect.map(
        sql<Changed>`
          UPDATE orders o SET status = ${status}, reason = ${reason}, updated_at = now()
          FROM unnest(${orderIds}::bigint[]) AS e(order_id)
          WHERE o.order_id = e.order_id AND o.status IN ('PENDING', 'NEEDS_ATTENTION')
          RETURNING o.order_id, o.user_id, o.product_id, o.quantity, o.amount::text AS amount`,
        (rows) => {
          const byId = new Map(rows.map((row) => [Number(row.orderId), row]))
          return orderIds.flatMap((id) => {
            const row = byId.get(id)
            byId.delete(id)
            return row === undefined ? [] : [row]
          })
        }
      )

    const fields = (row: Changed, occurredAt: DateTime.Utc) => ({
      eventId: eventId(),
      orderId: Ids.OrderId.make(Number(row.orderId)),
      userId: Ids.UserId.make(Number(row.userId)),
      productId: Ids.ProductId.make(Number(row.productId)),
      quantity: row.quantity,
      amount: money(row.amount),
      occurredAt
    })

    /** In the consumer's transaction: the reserved orders are CONFIRMED, and `OrderConfirmed` goes out with the commit. */
    const confirm = Effect.fn("Orders.confirm")(function*(events: ReadonlyArray<OrderEvents.InventoryReserved>) {
      const moved = yield* move(events.map((event) => event.orderId), "CONFIRMED", null)
      const now = yield* DateTime.now
      yield* Outbox.append(
        topics.orderStatus,
        ...moved.map((row) => new OrderEvents.OrderConfirmed(fields(row, now), unchecked))
      )
      return moved.length
    })

    /** In the consumer's transaction: the orders whose stock ran out are CANCELLED with the reason. */
    const cancel = Effect.fn("Orders.cancel")(function*(events: ReadonlyArray<OrderEvents.InventoryFailed>) {
      const moved = yield* move(events.map((event) => event.orderId), "CANCELLED", "OUT_OF_STOCK")
      const now = yield* DateTime.now
      yield* Outbox.append(
        topics.orderStatus,
        ...moved.map((row) =>
          new OrderEvents.OrderCancelled({ ...fields(row, now), reason: "OUT_OF_STOCK" }, unchecked)
        )
      )
      return moved.length
    })

    /** A PENDING order whose `OrderCreated` or inventory outcome was dead-lettered: it will not move on by itself. */
    const markNeedsAttention = Effect.fn("Orders.markNeedsAttention")(function*(orderId: Ids.OrderId, reason: string) {
      const rows = yield* sql`
        UPDATE orders SET status = 'NEEDS_ATTENTION', reason = ${pgText(reason)}, updated_at = now()
        WHERE order_id = ${orderId} AND status = 'PENDING' RETURNING order_id`
      return rows.length === 1
    })

    return { place, get, list, products, confirm, cancel, markNeedsAttention } as const
  })
}) {}
