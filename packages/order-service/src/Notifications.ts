import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { OrderEvents } from "@kpipe/events"
import { Database } from "@kpipe/sql"
import * as BigDecimal from "effect/BigDecimal"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Predicate from "effect/Predicate"
import * as Batcher from "./internal/batcher.ts"
import { emailOf, phoneOf } from "./internal/contacts.ts"
import { Mailer } from "./Mailer.ts"
import { SmsGateway } from "./SmsGateway.ts"

export type Channel = "EMAIL" | "SMS"

/** Customers notified at once by one batch (their delivery rows are written together, see `recordAll`). */
const concurrency = 32

/** Statements writing delivery rows at once, each on a connection of the notifications' own pool. */
const recordWorkers = 2

/**
 * A channel did not get its message out; the event is retried (channels already sent are skipped),
 * then dead-lettered. A channel whose delivery row could not be written fails the event with that
 * `SqlError` instead, so the consumer sees a database fault and waits for the database.
 */
export class NotificationFailed extends Data.TaggedError("NotificationFailed")<{
  /** The event's: a batch's failure names it, so the consumer retries that event alone. */
  readonly eventId: string
  readonly orderId: number
  readonly channels: ReadonlyArray<Channel>
  readonly message: string
}> {}

interface Delivery {
  readonly eventId: string
  readonly channel: Channel
  readonly orderId: number
  readonly kind: Message["kind"]
  /** Why it failed; `null` when it went out. */
  readonly failure: string | null
}

/**
 * A channel's provider could not be reached or said it is not available (SMTP 421 or 451, a login or TLS refused, HTTP 401,
 * 407, 408, 429 or 502-504, no answer): not the event's fault, so the event waits for it (`"wait"`), however long,
 * and is never dead-lettered for it, unless the other channel was refused (`NotificationFailed`).
 * Channels already sent are skipped when it is tried again.
 */
export class NotificationUnavailable extends Data.TaggedError("NotificationUnavailable")<{
  readonly eventId: string
  readonly orderId: number
  readonly channels: ReadonlyArray<Channel>
  readonly message: string
}> {}

const isSqlError = (error: unknown): error is SqlError => Predicate.isTagged(error, "SqlError")

interface ChannelFailure {
  readonly message: string
  readonly unavailable: boolean
}

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
  scoped: Effect.gen(function*() {
    const sql = yield* SqlClient
    // The delivery rows commit outside the consumer's transactions, which hold connections of the
    // shared pool while they wait for them: on that pool all of them could wait for good.
    const deliveriesSql = yield* Database.separatePool(recordWorkers)
    const mailer = yield* Mailer
    const sms = yield* SmsGateway

    /**
     * Delivery rows of concurrent sends, written with one statement (the last word per channel of an
     * event wins). A row once SENT stays so: an attempt that read the rows before another attempt's
     * send was recorded (a member that lost its partition and has not noticed yet) and then failed
     * would mark it FAILED, and the next attempt would send the message again.
     */
    const recordAll = (deliveries: ReadonlyArray<Delivery>, restore: Batcher.Restore) => {
      const last = new Map(deliveries.map((delivery) => [`${delivery.eventId}/${delivery.channel}`, delivery]))
      const rows = [...last.values()]
      // A statement of its own, no transaction to see through: a stop need not wait for it (the
      // event comes again, and a channel whose row is missing goes out again with the same Message-ID).
      return restore(deliveriesSql`
        INSERT INTO notification_deliveries (event_id, channel, order_id, kind, state, attempts, last_error)
        SELECT d.event_id, d.channel, d.order_id, d.kind, CASE WHEN d.last_error IS NULL THEN 'SENT' ELSE 'FAILED' END,
               1, d.last_error
        FROM unnest(${rows.map((row) => row.eventId)}::text[], ${rows.map((row) => row.channel)}::text[],
                    ${rows.map((row) => row.orderId)}::bigint[], ${rows.map((row) => row.kind)}::text[],
                    ${rows.map((row) => row.failure)}::text[]) AS d(event_id, channel, order_id, kind, last_error)
        ON CONFLICT (event_id, channel) DO UPDATE SET state = EXCLUDED.state,
          attempts = notification_deliveries.attempts + 1, last_error = EXCLUDED.last_error, updated_at = now()
        WHERE notification_deliveries.state <> 'SENT'`).pipe(
        Effect.as(deliveries.map(() => undefined)),
        Effect.withSpan("Notifications.record", { attributes: { size: rows.length } })
      )
    }
    const record = yield* Batcher.make(recordAll, { maxBatch: 500, workers: recordWorkers })

    /**
     * One channel of one event, unless it went out before; its delivery row commits as soon as it
     * is done, on a connection of its own, whatever the consumer's transaction does. Seen through
     * once started (bounded by the SMTP and SMS timeouts): a handler interrupted by a rebalance or
     * a stop would otherwise leave a message the provider already had without its row, and the
     * partition's next owner would send it again.
     */
    const deliver = (
      event: OrderEvents.OrderStatusChanged,
      message: Message,
      channel: Channel,
      sentBefore: boolean,
      send: Effect.Effect<void, ChannelFailure>
    ): Effect.Effect<void, ChannelFailure | SqlError> =>
      sentBefore ? Effect.void : Effect.gen(function*() {
        const result = yield* Effect.either(send)
        const failure = Either.isLeft(result) ? result.left.message.slice(0, 2000) : null
        yield* record({ eventId: event.eventId, channel, orderId: event.orderId, kind: message.kind, failure })
        if (Either.isLeft(result)) return yield* Effect.fail(result.left)
      }).pipe(Effect.withSpan(`Notifications.${channel}`), Effect.uninterruptible)

    const notifyOne = (event: OrderEvents.OrderStatusChanged, sent: ReadonlySet<string>) =>
      Effect.gen(function*() {
        const message = messageOf(event)
        const messageId = `<${event.eventId}@orders.kpipe.test>`
        const results = yield* Effect.all([
          deliver(
            event,
            message,
            "EMAIL",
            sent.has(`${event.eventId}/EMAIL`),
            mailer.send({ to: emailOf(event.userId), subject: message.subject, text: message.text, messageId })
          ),
          deliver(
            event,
            message,
            "SMS",
            sent.has(`${event.eventId}/SMS`),
            sms.send({ to: phoneOf(event.userId), text: `${message.subject}. ${message.text}`, messageId })
          )
        ], { concurrency: 2, mode: "either" })
        const channelFailures: Array<{ readonly channel: Channel; readonly failure: ChannelFailure }> = []
        for (const [i, result] of results.entries()) {
          if (Either.isRight(result)) continue
          if (isSqlError(result.left)) return yield* result.left
          channelFailures.push({ channel: i === 0 ? "EMAIL" : "SMS", failure: result.left })
        }
        if (channelFailures.length > 0) {
          const fields = {
            eventId: event.eventId,
            orderId: event.orderId,
            channels: channelFailures.map(({ channel }) => channel),
            message: channelFailures.map(({ channel, failure }) => `${channel}: ${failure.message}`).join("; ")
          }
          // A refusal is the event's to answer for, even beside a provider that is away: waiting for
          // that provider would try the refused channel again without end.
          return yield* channelFailures.every(({ failure }) => failure.unavailable)
            ? new NotificationUnavailable(fields)
            : new NotificationFailed(fields)
        }
      })

    /**
     * Every event's messages, `concurrency` customers at a time (one customer's in the events'
     * order, up to the first that fails). Channels sent before (an earlier attempt) are skipped, read in one query. Fails
     * once all are done, so the others' channels are recorded as sent: with a database fault
     * before any channel's failure, since it is no event's fault; then with the first event a
     * provider refused (the consumer retries that event alone, per the policy, this attempt
     * counted, so its channels are not tried more often than the policy says); then with the
     * first event waiting for a provider.
     */
    const notifyAll = Effect.fn("Notifications.notifyAll")(function*(
      events: ReadonlyArray<OrderEvents.OrderStatusChanged>
    ) {
      const rows = yield* sql<{ eventId: string; channel: Channel }>`
        SELECT event_id, channel FROM notification_deliveries
        WHERE event_id = ANY(${events.map((event) => event.eventId)}::text[]) AND state = 'SENT'`
      const sent = new Set(rows.map((row) => `${row.eventId}/${row.channel}`))
      const byUser = new Map<number, Array<OrderEvents.OrderStatusChanged>>()
      for (const event of events) {
        const own = byUser.get(event.userId)
        if (own === undefined) byUser.set(event.userId, [event])
        else own.push(event)
      }
      // A customer's events stop at the first that fails: a later message must not overtake it.
      // The batch fails then, so the consumer tries its events again one by one, in their order.
      const outcomes = yield* Effect.forEach(
        byUser.values(),
        (own) => Effect.either(Effect.forEach(own, (event) => notifyOne(event, sent), { discard: true })),
        { concurrency }
      )
      const failures = outcomes.flatMap((outcome) => Either.isLeft(outcome) ? [outcome.left] : [])
      const failure = failures.find(isSqlError) ??
        failures.find((failure) => failure._tag === "NotificationFailed") ?? failures[0]
      if (failure !== undefined) return yield* failure
    })

    const notify = (event: OrderEvents.OrderStatusChanged) => notifyAll([event])

    return { notify, notifyAll } as const
  })
}) {}
