import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { OrderEvents } from "@kpipe/events"
import * as BigDecimal from "effect/BigDecimal"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { emailOf, phoneOf } from "./internal/contacts.ts"
import { outsideTransaction } from "./internal/outsideTransaction.ts"
import { Mailer } from "./Mailer.ts"
import { SmsGateway } from "./SmsGateway.ts"

export type Channel = "EMAIL" | "SMS"

/** A channel did not get its message out; the event is retried (channels already sent are skipped), then dead-lettered. */
export class NotificationFailed extends Data.TaggedError("NotificationFailed")<{
  readonly orderId: number
  readonly channels: ReadonlyArray<Channel>
  readonly message: string
}> {}

export interface Message {
  readonly kind: "CONFIRMATION" | "CANCELLATION"
  readonly subject: string
  readonly text: string
}

export const messageOf = (event: OrderEvents.OrderStatusChanged): Message => {
  const what = `${event.quantity} x product ${event.productId}, ${BigDecimal.format(event.amount)}`
  return event.type === "OrderConfirmed"
    ? {
      kind: "CONFIRMATION",
      subject: `Order ${event.orderId} confirmed`,
      text: `Your order ${event.orderId} (${what}) is confirmed.`
    }
    : {
      kind: "CANCELLATION",
      subject: `Order ${event.orderId} cancelled`,
      text: `Your order ${event.orderId} (${what}) was cancelled: ${
        event.reason === "OUT_OF_STOCK" ? "out of stock" : event.reason
      }. Nothing was charged.`
    }
}

/**
 * Tells the customer what became of an order, by e-mail and SMS in parallel. Each channel is
 * idempotent on its own: its delivery row (event, channel) commits as soon as the channel is done,
 * outside the consumer's transaction, so when SMS fails and the event comes again the e-mail is
 * not sent a second time. The same row keeps each channel's state for the order's view.
 */
export class Notifications extends Effect.Service<Notifications>()("@kpipe/order-service/Notifications", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const mailer = yield* Mailer
    const sms = yield* SmsGateway

    const deliver = (
      event: OrderEvents.OrderStatusChanged,
      message: Message,
      channel: Channel,
      send: Effect.Effect<void, { readonly message: string }>
    ): Effect.Effect<void, { readonly message: string } | SqlError> =>
      outsideTransaction(Effect.gen(function*() {
        const [done] = yield* sql<{ state: string }>`
          SELECT state FROM notification_deliveries WHERE event_id = ${event.eventId} AND channel = ${channel}`
        if (done?.state === "SENT") return
        const result = yield* Effect.either(send)
        const failure = Either.isLeft(result) ? result.left.message.slice(0, 2000) : null
        yield* sql`
          INSERT INTO notification_deliveries (event_id, channel, order_id, kind, state, attempts, last_error)
          VALUES (${event.eventId}, ${channel}, ${event.orderId}, ${message.kind}, ${
          failure === null ? "SENT" : "FAILED"
        },
                  1, ${failure})
          ON CONFLICT (event_id, channel) DO UPDATE SET state = EXCLUDED.state,
            attempts = notification_deliveries.attempts + 1, last_error = EXCLUDED.last_error, updated_at = now()`
        if (Either.isLeft(result)) return yield* Effect.fail(result.left)
      })).pipe(Effect.withSpan(`Notifications.${channel}`))

    const notify = Effect.fn("Notifications.notify")(function*(event: OrderEvents.OrderStatusChanged) {
      const message = messageOf(event)
      const messageId = `<${event.eventId}@orders.kpipe.test>`
      const results = yield* Effect.all([
        deliver(
          event,
          message,
          "EMAIL",
          mailer.send({ to: emailOf(event.userId), subject: message.subject, text: message.text, messageId })
        ),
        deliver(
          event,
          message,
          "SMS",
          sms.send({ to: phoneOf(event.userId), text: `${message.subject}. ${message.text}`, messageId })
        )
      ], { concurrency: 2, mode: "either" })
      const failed = (["EMAIL", "SMS"] as const).filter((_, i) => Either.isLeft(results[i]!))
      if (failed.length > 0) {
        return yield* new NotificationFailed({
          orderId: event.orderId,
          channels: failed,
          message: results.flatMap((result, i) =>
            Either.isLeft(result) ? [`${i === 0 ? "EMAIL" : "SMS"}: ${result.left.message}`] : []
          ).join("; ")
        })
      }
    })

    return { notify } as const
  })
}) {}
