import { SqlClient } from "@effect/sql/SqlClient"
import type { Ids } from "@kpipe/events"
import { Consumer, Producer } from "@kpipe/kafka"
import { DeadLetter, DeadLetterMonitor, IdempotentConsumer, OutboxRelay, RetryPolicy } from "@kpipe/pipeline"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ParseError } from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { Inventory } from "./Inventory.ts"
import { Notifications } from "./Notifications.ts"
import { Orders } from "./Orders.ts"
import { OrderTopics } from "./Topics.ts"

/** S2's follow-ups: 3 attempts (1 s, then 2 s; ×2, at most 10 s), then the dead-letter topic. */
export const retry = RetryPolicy.seedOrderFollowUps

/** Consumer groups, each under `TOPIC_PREFIX`. */
export const groups = {
  inventory: "inventory-consumer-group",
  confirmations: "order-confirmation-group",
  cancellations: "order-cancellation-group",
  notifications: "notification-consumer-group",
  orderCreatedDlt: "dlt-monitoring-group",
  orderStatusDlt: "dlt-monitoring-group-order-status",
  inventoryReservedDlt: "dlt-monitoring-group-inventory-reserved",
  inventoryFailedDlt: "dlt-monitoring-group-inventory-failed",
  attention: "order-attention-group"
} as const

const where = (record: Consumer.ConsumerRecord) => ({
  topic: record.topic,
  partition: record.partition,
  offset: record.offset
})

/**
 * A dead-lettered `OrderCreated`, `InventoryReserved` or `InventoryFailed` leaves its order PENDING
 * for good (a reserved order keeps its stock); this marks it NEEDS_ATTENTION with the failure (the
 * `DeadLetterMonitor`s beside it store, alert and count). A later outcome (a redrive) still moves it.
 */
const attention = Effect.gen(function*() {
  const topics = yield* OrderTopics
  const orders = yield* Orders
  const config = yield* Config
  const sql = yield* SqlClient
  const decoders = new Map<string, (value: string) => Effect.Effect<{ readonly orderId: Ids.OrderId }, ParseError>>(
    [topics.orderCreated, topics.inventoryReserved, topics.inventoryFailed].map((topic) => [
      topic.deadLetter.name,
      topic.decode
    ])
  )
  yield* Consumer.run(
    {
      ...config.consumer,
      groupId: yield* ServiceTopics.group(groups.attention),
      topics: [...decoders.keys()]
    },
    (record) => {
      const since = Date.now()
      return Effect.gen(function*() {
        const { letter, value } = yield* DeadLetter.decode(record)
        const event = yield* decoders.get(record.topic)!(value?.toString("utf8") ?? "")
        const marked = yield* orders.markNeedsAttention(event.orderId, `${letter.errorTag}: ${letter.errorMessage}`)
        if (marked) {
          yield* Effect.logWarning("Order needs attention").pipe(
            Effect.annotateLogs({ orderId: event.orderId, topic: letter.originalTopic })
          )
        }
      }).pipe(
        // An undecodable record names no order; the monitor has raised it already.
        Effect.catchTag("ParseError", () => Effect.void),
        // Whatever the cause (the database away, a revoked grant), the dead letter waits and its
        // partition with it: skipping would leave its order PENDING for good. At Warning, at Error
        // once it has waited `attentionErrorAfter`, so a mark that cannot succeed is not only a Warning.
        Effect.tapErrorCause((cause) =>
          (Date.now() - since < Duration.toMillis(config.attentionErrorAfter) ? Effect.logWarning : Effect.logError)(
            "Marking an order NEEDS_ATTENTION failed; the dead letter waits and is tried again",
            cause
          ).pipe(Effect.annotateLogs({ ...where(record), waitedSeconds: Math.round((Date.now() - since) / 1000) }))
        ),
        Effect.retry(
          Schedule.exponential("500 millis").pipe(Schedule.modifyDelay((_, d) => Duration.min(d, Duration.seconds(30))))
        ),
        Effect.orDie,
        Effect.provideService(SqlClient, sql)
      )
    }
  )
})

/**
 * What a process runs besides the API; each can be deployed apart (`ORDER_ROLES`): `relay` (the
 * outbox relay, for every row any role appends), `orders` (confirmations, cancellations, the
 * dead-letter monitors and NEEDS_ATTENTION), `inventory` (reservations), `notifications`.
 */
export interface WorkerRoles {
  readonly relay: boolean
  readonly orders: boolean
  readonly inventory: boolean
  readonly notifications: boolean
}

/** The options of the idempotent consumers, as `roles` runs them. */
export const consumerOptions = Effect.gen(function*() {
  const topics = yield* OrderTopics
  const config = yield* Config
  const inventory = yield* Inventory
  const orders = yield* Orders
  const notifications = yield* Notifications
  const group = ServiceTopics.group
  // The topics are keyed by user, so their partitions touch disjoint orders and outbox keys: all
  // of a topic's partitions are applied at once.
  const kafka = { ...config.consumer, partitionsConsumedConcurrently: topics.orderStatus.partitions }

  const reserve = IdempotentConsumer.options({
    topic: topics.orderCreated,
    groupId: yield* group(groups.inventory),
    errors: { StockNotFound: "retry", SqlError: "retry", ParseError: "deadLetter" },
    retry,
    kafka,
    handleBatch: (delivered) => Effect.asVoid(inventory.reserveAll(delivered.map(({ event }) => event)))
  })
  const confirm = IdempotentConsumer.options({
    topic: topics.inventoryReserved,
    groupId: yield* group(groups.confirmations),
    errors: { SqlError: "retry", ParseError: "deadLetter" },
    retry,
    kafka,
    handleBatch: (delivered) => orders.confirm(delivered.map(({ event }) => event))
  })
  const cancel = IdempotentConsumer.options({
    topic: topics.inventoryFailed,
    groupId: yield* group(groups.cancellations),
    errors: { SqlError: "retry", ParseError: "deadLetter" },
    retry,
    kafka,
    handleBatch: (delivered) => orders.cancel(delivered.map(({ event }) => event))
  })
  const notify = IdempotentConsumer.options({
    topic: topics.orderStatus,
    groupId: yield* group(groups.notifications),
    errors: { NotificationFailed: "retry", NotificationUnavailable: "wait", SqlError: "retry" },
    retry,
    kafka,
    handleBatch: (delivered) => notifications.notifyAll(delivered.map(({ event }) => event))
  })
  return { reserve, confirm, cancel, notify }
})

/** The workers of `roles`. */
export const roles = (selected: WorkerRoles) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const topics = yield* OrderTopics
    const config = yield* Config
    const { cancel, confirm, notify, reserve } = yield* consumerOptions
    const group = ServiceTopics.group
    const kafka = config.consumer
    const monitors = Layer.mergeAll(
      DeadLetterMonitor.layer({ topic: topics.orderCreated, groupId: yield* group(groups.orderCreatedDlt), kafka }),
      DeadLetterMonitor.layer({ topic: topics.orderStatus, groupId: yield* group(groups.orderStatusDlt), kafka }),
      DeadLetterMonitor.layer({
        topic: topics.inventoryReserved,
        groupId: yield* group(groups.inventoryReservedDlt),
        kafka
      }),
      DeadLetterMonitor.layer({
        topic: topics.inventoryFailed,
        groupId: yield* group(groups.inventoryFailedDlt),
        kafka
      }),
      Layer.scopedDiscard(attention)
    )
    return Layer.mergeAll(
      Layer.mergeAll(
        selected.inventory ? IdempotentConsumer.layer(reserve) : Layer.empty,
        selected.orders
          ? Layer.merge(IdempotentConsumer.layer(confirm), IdempotentConsumer.layer(cancel))
          : Layer.empty,
        selected.notifications ? IdempotentConsumer.layer(notify) : Layer.empty
      ).pipe(Layer.provide(DeadLetter.layer)),
      selected.orders ? monitors : Layer.empty,
      selected.relay ? OutboxRelay.layerConfig.pipe(Layer.provide(Producer.layer())) : Layer.empty
    )
  }))

/** All the consumers, dead-letter monitors and the outbox relay. */
export const layer = roles({ relay: true, orders: true, inventory: true, notifications: true })
