import { SqlClient } from "@effect/sql/SqlClient"
import { describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { CouponEvents, Ids } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ExactlyOnce, TestKafka, TestLogging } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config, layerFromEnv as ConfigFromEnv } from "../src/Config.ts"
import { CouponStore } from "../src/CouponStore.ts"
import * as Migrations from "../src/Migrations.ts"
import { layerRedis, StockReservations } from "../src/StockReservations.ts"
import * as Topics from "../src/Topics.ts"
import { issueConsumerOptions } from "../src/Workers.ts"
import { deleteKeys, testEnv } from "./utils.ts"

interface Variant {
  readonly batchSize: number
}

// One request per transaction, and the configured default (200): the batch statement.
const variants: ReadonlyArray<Variant> = [{ batchSize: 1 }, { batchSize: 200 }]

const topics = new Map<string, Topics.IssueTopic>()
const coupons = 5
const base = Date.now()

// Each request for one of the 5 coupons (the record key), by a user of its own; the coupons have
// stock for all, so every request is issued.
const event = (index: number) =>
  new CouponEvents.CouponIssueRequested({
    eventId: Ids.EventId.make(crypto.randomUUID()),
    occurredAt: DateTime.unsafeMake(base + index),
    couponId: Ids.CouponId.make(1 + (index % coupons)),
    userId: Ids.UserId.make(100 + index),
    timestamp: base + index
  })

const seedCoupons = Effect.gen(function*() {
  const sql = yield* SqlClient
  const reservations = yield* StockReservations
  const ids = yield* sql<{ id: number }>`
    INSERT INTO coupons ${
    sql.insert(Array.from({ length: coupons }, (_, i) => ({
      name: `coupon-${i}`,
      totalQuantity: 100,
      validFrom: new Date(base - 3_600_000),
      validUntil: new Date(base + 86_400_000)
    })))
  } RETURNING id`
  yield* Effect.forEach(ids, ({ id }) => reservations.initialize(Ids.CouponId.make(id), 100), { discard: true })
})

const RedisCleanup = Layer.scopedDiscard(
  Effect.flatMap(Config, (config) => Effect.addFinalizer(() => Effect.ignore(deleteKeys(`${config.keyPrefix}*`))))
)

const TestLive = Layer.merge(RedisCleanup, Layer.merge(CouponStore.Default, StockReservations.Default)).pipe(
  Layer.provideMerge(
    Layer.mergeAll(Database.layerTest([...Migrations.all, ExactlyOnce.appliedTable]), layerRedis, TestKafka.layer)
  ),
  Layer.provideMerge(ConfigFromEnv),
  Layer.provideMerge(TestLogging.layer)
)

const exactlyOnce = ExactlyOnce.property<
  CouponEvents.CouponIssueRequested,
  Variant,
  Layer.Layer.Success<typeof TestLive>
>({
  topic: Effect.gen(function*() {
    const topic = Topics.named(`${TestKafka.uniqueName("eo-coupons")}.`).requests
    topics.set(topic.name, topic)
    yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
    yield* seedCoupons
    return topic.name
  }),
  event,
  encode: (e) => Effect.map(SeedTopics.couponIssueRequests.encode(e), (value) => ({ key: String(e.couponId), value })),
  consumer: ({ group, hold, topic, variant }) =>
    Layer.unwrapEffect(Effect.map(issueConsumerOptions, (options) =>
      ExactlyOnce.replica(
        IdempotentConsumer.run,
        { ...options, topic: topics.get(topic)!, groupId: group, batchSize: variant.batchSize },
        { group, hold }
      ))).pipe(Layer.provide(DeadLetter.layer)),
  applied: ExactlyOnce.appliedIn,
  duplicates: (group) => ExactlyOnce.taggedCount(IdempotentConsumer.duplicatesTotal, group),
  variants
})

describe("issue consumer", () => {
  it.live.prop(
    "settles each distinct request once per group, whatever the duplicates, order, stopped replica and replay",
    ExactlyOnce.arbitraries(variants),
    ([sample]) => exactlyOnce(sample).pipe(Effect.provide(TestLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 300_000, fastCheck: ExactlyOnce.runs(variants, 2) }
  )
})
