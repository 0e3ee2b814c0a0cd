import type { SqlClient } from "@effect/sql/SqlClient"
import { OrderModels } from "@kpipe/contracts"
import { Ids } from "@kpipe/events"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import { unchecked } from "./unchecked.ts"

export interface OrderRow {
  readonly orderId: string
  readonly userId: string
  readonly productId: string
  readonly quantity: number
  readonly unitPrice: string
  readonly amount: string
  readonly status: OrderModels.OrderStatus
  readonly reason: string | null
  readonly idempotencyKey: string | null
  readonly emailState: OrderModels.NotificationState | null
  readonly emailAttempts: number | null
  readonly smsState: OrderModels.NotificationState | null
  readonly smsAttempts: number | null
  readonly createdAt: Date
  readonly updatedAt: Date
}

/** The order columns with each channel's latest delivery state; `where` filters `orders o`. */
export const selectOrders = (sql: SqlClient) =>
  sql`
    SELECT o.order_id, o.user_id, o.product_id, o.quantity, o.unit_price::text AS unit_price,
           o.amount::text AS amount, o.status, o.reason, o.idempotency_key, o.created_at, o.updated_at,
           e.state AS email_state, e.attempts AS email_attempts, s.state AS sms_state, s.attempts AS sms_attempts
    FROM orders o
    LEFT JOIN LATERAL (
      SELECT state, attempts FROM notification_deliveries d
      WHERE d.order_id = o.order_id AND d.channel = 'EMAIL' ORDER BY d.updated_at DESC LIMIT 1
    ) e ON true
    LEFT JOIN LATERAL (
      SELECT state, attempts FROM notification_deliveries d
      WHERE d.order_id = o.order_id AND d.channel = 'SMS' ORDER BY d.updated_at DESC LIMIT 1
    ) s ON true`

const channel = (state: OrderModels.NotificationState | null, attempts: number | null) =>
  new OrderModels.ChannelNotification({ state: state ?? "PENDING", attempts: attempts ?? 0 }, unchecked)

/** A new order's: nothing sent yet. */
export const pendingNotifications = new OrderModels.Notifications({
  email: channel(null, null),
  sms: channel(null, null)
}, unchecked)

/** pg hands NUMERIC as text ("89.90"); the model's Money is normalized ("89.9"). */
const money = (text: string) => BigDecimal.normalize(BigDecimal.unsafeFromString(text))

export const toOrder = (row: OrderRow): OrderModels.Order =>
  new OrderModels.Order({
    orderId: Ids.OrderId.make(Number(row.orderId)),
    userId: Ids.UserId.make(Number(row.userId)),
    productId: Ids.ProductId.make(Number(row.productId)),
    quantity: row.quantity,
    unitPrice: money(row.unitPrice),
    amount: money(row.amount),
    status: row.status,
    reason: row.reason,
    notifications: new OrderModels.Notifications({
      email: channel(row.emailState, row.emailAttempts),
      sms: channel(row.smsState, row.smsAttempts)
    }, unchecked),
    createdAt: DateTime.unsafeFromDate(row.createdAt),
    updatedAt: DateTime.unsafeFromDate(row.updatedAt)
  }, unchecked)

export { money }
