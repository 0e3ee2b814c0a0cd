import { SqlClient } from "@effect/sql/SqlClient"
import { describe, layer } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { Ids, OrderEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, Topic, TopicAdmin } from "@kpipe/pipeline"
import { ExactlyOnce, TestKafka } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { consumerOptions } from "../src/Workers.ts"
import { TestLive } from "./utils.ts"

interface Variant {
  readonly batchSize: number
}

// One event per transaction, and the default batch (the batch statement of confirm and cancel).
const variants: ReadonlyArray<Variant> = [{ batchSize: 1 }, { batchSize: 100 }]

const OrdersLive = TestLive("eo-orders")
type R = Layer.Layer.Success<typeof OrdersLive>

const topics = new Map<string, Topic.Any>()
const now = DateTime.unsafeMake(Date.now())
// The seeded product with stock for every run.
const product = Ids.ProductId.make(4)
const amount = BigDecimal.unsafeFromString("1.99")

/** A fresh copy of `seed` created on the broker for one run, then `prepare` (e.g. the run's orders). */
const freshTopic = <A extends Topic.EventShape, I>(
  seed: Topic.Topic<A, I>,
  prepare: Effect.Effect<void, unknown, SqlClient>
) =>
  Effect.gen(function*() {
    const topic = Topic.prefixed(seed, `${TestKafka.uniqueName("eo-orders")}.`)
    topics.set(topic.name, topic)
    yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
    yield* ExactlyOnce.createAppliedTable
    yield* prepare
    return topic.name
  })

/** The run's consumer: the service's own options on the run's topic, group and batch size. */
const running = <A extends Topic.EventShape, I, E extends { readonly _tag: string }, R, B>(
  options: IdempotentConsumer.Options<A, I, E, R, B>,
  args: ExactlyOnce.Replica<Variant>
) =>
  ExactlyOnce.replica(
    IdempotentConsumer.run,
    { ...options, topic: topics.get(args.topic)!, groupId: args.group, batchSize: args.variant.batchSize },
    args
  ).pipe(Layer.provide(DeadLetter.layer))

const duplicates = (group: string) => ExactlyOnce.taggedCount(IdempotentConsumer.duplicatesTotal, group)

// Order ids of this file alone: the database is shared by its runs.
let nextOrder = 1_000_000 + Math.floor(Math.random() * 1_000) * 1_000
let runOrders: ReadonlyArray<number> = []
const userOf = (index: number) => Ids.UserId.make(1 + (index % 5))

/** The run's 12 PENDING orders, for the outcome and notification events to name. */
const pendingOrders = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ orderId: string }>`
    INSERT INTO orders ${
    sql.insert(Array.from({ length: 12 }, (_, i) => ({
      userId: userOf(i),
      productId: product,
      quantity: 1,
      unitPrice: "1.99",
      amount: "1.99"
    })))
  } RETURNING order_id`
  runOrders = rows.map((row) => Number(row.orderId))
})

const reserve = ExactlyOnce.property<OrderEvents.OrderCreated, Variant, R>({
  topic: freshTopic(SeedTopics.orderCreated, Effect.sync(() => void (nextOrder += 100))),
  event: (index) =>
    new OrderEvents.OrderCreated({
      eventId: Ids.EventId.make(crypto.randomUUID()),
      orderId: Ids.OrderId.make(nextOrder + index),
      userId: userOf(index),
      productId: product,
      quantity: 1,
      amount,
      createdAt: now
    }),
  encode: (e) => Effect.map(SeedTopics.orderCreated.encode(e), (value) => ({ key: String(e.userId), value })),
  consumer: (args) => Layer.unwrapEffect(Effect.map(consumerOptions, (all) => running(all.reserve, args))),
  applied: ExactlyOnce.appliedIn,
  duplicates,
  variants,
  // One reservation per order: a second group reserving the same orders is no production case.
  otherGroup: false
})

const confirm = ExactlyOnce.property<OrderEvents.InventoryReserved, Variant, R>({
  topic: freshTopic(SeedTopics.inventoryReserved, pendingOrders),
  event: (index) =>
    new OrderEvents.InventoryReserved({
      eventId: Ids.EventId.make(crypto.randomUUID()),
      orderId: Ids.OrderId.make(runOrders[index]!),
      userId: userOf(index),
      productId: product,
      quantity: 1,
      occurredAt: now
    }),
  encode: (e) => Effect.map(SeedTopics.inventoryReserved.encode(e), (value) => ({ key: String(e.userId), value })),
  consumer: (args) => Layer.unwrapEffect(Effect.map(consumerOptions, (all) => running(all.confirm, args))),
  applied: ExactlyOnce.appliedIn,
  duplicates,
  variants
})

const cancel = ExactlyOnce.property<OrderEvents.InventoryFailed, Variant, R>({
  topic: freshTopic(SeedTopics.inventoryFailed, pendingOrders),
  event: (index) =>
    new OrderEvents.InventoryFailed({
      eventId: Ids.EventId.make(crypto.randomUUID()),
      orderId: Ids.OrderId.make(runOrders[index]!),
      userId: userOf(index),
      productId: product,
      quantity: 1,
      reason: "OUT_OF_STOCK",
      occurredAt: now
    }),
  encode: (e) => Effect.map(SeedTopics.inventoryFailed.encode(e), (value) => ({ key: String(e.userId), value })),
  consumer: (args) => Layer.unwrapEffect(Effect.map(consumerOptions, (all) => running(all.cancel, args))),
  applied: ExactlyOnce.appliedIn,
  duplicates,
  variants
})

const notify = ExactlyOnce.property<OrderEvents.OrderStatusChanged, Variant, R>({
  topic: freshTopic(SeedTopics.orderStatus, pendingOrders),
  event: (index): OrderEvents.OrderStatusChanged => {
    const fields = {
      eventId: Ids.EventId.make(crypto.randomUUID()),
      orderId: Ids.OrderId.make(runOrders[index]!),
      userId: userOf(index),
      productId: product,
      quantity: 1,
      amount,
      occurredAt: now
    }
    return index % 2 === 0
      ? new OrderEvents.OrderConfirmed(fields)
      : new OrderEvents.OrderCancelled({ ...fields, reason: "OUT_OF_STOCK" })
  },
  encode: (e) => Effect.map(SeedTopics.orderStatus.encode(e), (value) => ({ key: String(e.userId), value })),
  consumer: (args) => Layer.unwrapEffect(Effect.map(consumerOptions, (all) => running(all.notify, args))),
  applied: ExactlyOnce.appliedIn,
  duplicates,
  variants
})

const options = { timeout: 400_000, fastCheck: ExactlyOnce.runs(variants, 2) }

layer(OrdersLive, { timeout: "60 seconds", excludeTestServices: true })(
  "order-service consumers",
  (it) => {
    describe("exactly once, whatever the duplicates, order, stopped replica and replay", () => {
      it.effect.prop(
        "inventory: each order's stock reserved once",
        ExactlyOnce.arbitraries(variants),
        ([sample]) => reserve(sample),
        options
      )
      it.effect.prop(
        "confirmations: each reserved order confirmed once",
        ExactlyOnce.arbitraries(variants),
        ([sample]) => confirm(sample),
        options
      )
      it.effect.prop(
        "cancellations: each failed order cancelled once",
        ExactlyOnce.arbitraries(variants),
        ([sample]) => cancel(sample),
        options
      )
      it.effect.prop(
        "notifications: each status change notified once",
        ExactlyOnce.arbitraries(variants),
        ([sample]) => notify(sample),
        options
      )
    })
  }
)
