import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { CouponEvents, LoginEvents, MemberEvents, OrderEvents, ProductMetricsEvents } from "@kpipe/events"
import type * as Topic from "@kpipe/topic/Topic"
import * as Arbitrary from "effect/Arbitrary"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as ParseResult from "effect/ParseResult"
import type * as Schema from "effect/Schema"

const roundTrips = <A extends Topic.EventShape, I, E extends A, EI>(
  topic: Topic.Topic<A, I>,
  event: Schema.Schema<E, EI> & { readonly identifier: string }
) =>
  it.effect.prop(`${event.identifier} on ${topic.name}`, [Arbitrary.make(event)], ([value]) =>
    Effect.gen(function*() {
      const decoded = yield* topic.decode(yield* topic.encode(value))
      assert.deepStrictEqual(decoded, value)
    }))

describe("every event round-trips through its topic's JSON", () => {
  roundTrips(SeedTopics.memberEvents, MemberEvents.MemberCreated)
  roundTrips(SeedTopics.memberEvents, MemberEvents.MemberUpdated)
  roundTrips(SeedTopics.memberEvents, MemberEvents.MemberDeleted)
  roundTrips(SeedTopics.loginEvents, LoginEvents.LoginSucceeded)
  roundTrips(SeedTopics.orderCreated, OrderEvents.OrderCreated)
  roundTrips(SeedTopics.inventoryFailed, OrderEvents.InventoryFailed)
  roundTrips(SeedTopics.inventoryReserved, OrderEvents.InventoryReserved)
  roundTrips(SeedTopics.orderStatus, OrderEvents.OrderConfirmed)
  roundTrips(SeedTopics.orderStatus, OrderEvents.OrderCancelled)
  roundTrips(SeedTopics.catalogEvents, ProductMetricsEvents.LikeAdded)
  roundTrips(SeedTopics.catalogEvents, ProductMetricsEvents.LikeRemoved)
  roundTrips(SeedTopics.catalogEvents, ProductMetricsEvents.ProductViewed)
  roundTrips(SeedTopics.orderEvents, ProductMetricsEvents.OrderCreated)
  roundTrips(SeedTopics.orderEvents, ProductMetricsEvents.OrderCancelled)
  roundTrips(SeedTopics.orderEvents, ProductMetricsEvents.PaymentCompleted)
  roundTrips(SeedTopics.couponIssueRequests, CouponEvents.CouponIssueRequested)
})

const aggregateIdField: Record<string, string> = {
  "member-events": "memberId",
  "auth.login.events": "accountId",
  "order.created": "userId",
  "order.inventory-failed": "userId",
  "order.inventory-reserved": "userId",
  "order.status": "userId",
  "catalog-events": "productId",
  "order-events": "orderId",
  "coupon-issue-requests": "couponId"
}

describe("SeedTopics", () => {
  it("names the aggregate id of every topic", () => {
    assert.deepStrictEqual(SeedTopics.all.map((topic) => topic.name).sort(), Object.keys(aggregateIdField).sort())
  })

  for (const topic of SeedTopics.all) {
    it.prop(`${topic.name} is keyed by ${aggregateIdField[topic.name]}`, [Arbitrary.make(topic.schema)], ([event]) => {
      const key = topic.key(event)
      assert.strictEqual(key, String(event[aggregateIdField[topic.name]!]))
      assert.match(key, /^[1-9]\d*$/)
    })

    // Objects with a non-callable `toString`/`valueOf` make decoding die instead of failing (a
    // defect reported separately), so the generated JSON leaves those keys out.
    const anyJson = FastCheck.jsonValue().filter((value) => !/"(toString|valueOf)"/.test(JSON.stringify(value)))

    // Valid JSON shaped like an event header: known and unknown types, any version and event id,
    // but none of the payload fields.
    const types = [...new Set(FastCheck.sample(Arbitrary.make(topic.schema), 200).map((event) => event.type))]
    const headerOnly = FastCheck.record({
      type: FastCheck.oneof(FastCheck.constantFrom(...types), FastCheck.string(), anyJson),
      version: FastCheck.oneof(FastCheck.constant(1), anyJson),
      eventId: FastCheck.oneof(FastCheck.uuid(), anyJson)
    }, { requiredKeys: [] }).map((object) => JSON.stringify(object))

    it.effect.prop(
      `${topic.name} rejects text that is not one of its events`,
      [FastCheck.oneof(FastCheck.string(), anyJson.map((value) => JSON.stringify(value)), headerOnly)],
      ([text]) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(topic.decode(text))
          assert.isTrue(ParseResult.isParseError(error))
        })
    )

    it.effect.prop(
      `${topic.name} rejects the events of every other topic`,
      [Arbitrary.make(topic.schema)],
      ([event]) =>
        Effect.gen(function*() {
          const json = yield* topic.encode(event)
          for (const other of SeedTopics.all.filter((other) => other !== topic)) {
            const error = yield* Effect.flip(other.decode(json))
            assert.isTrue(ParseResult.isParseError(error), `${other.name} accepted ${json}`)
          }
        })
    )

    const missing = FastCheck.constant(undefined)
    const wrongField = FastCheck.oneof(
      FastCheck.tuple(
        FastCheck.constant("type"),
        FastCheck.oneof(missing, anyJson.filter((v) => !(typeof v === "string" && types.includes(v))))
      ),
      FastCheck.tuple(
        FastCheck.constant("version"),
        FastCheck.oneof(
          missing,
          FastCheck.integer({ min: 1000 }),
          anyJson.filter((v) => typeof v !== "number")
        )
      ),
      FastCheck.tuple(
        FastCheck.constant("eventId"),
        FastCheck.oneof(missing, anyJson.filter((v) => typeof v !== "string"))
      )
    )

    it.effect.prop(
      `${topic.name} rejects one of its events whose type, version or event id has the wrong shape`,
      [Arbitrary.make(topic.schema), wrongField],
      ([event, [field, value]]) =>
        Effect.gen(function*() {
          const json = JSON.parse(yield* topic.encode(event))
          const error = yield* Effect.flip(topic.decode(JSON.stringify({ ...json, [field]: value })))
          assert.isTrue(ParseResult.isParseError(error), `${topic.name} accepted ${field} = ${JSON.stringify(value)}`)
        })
    )

    it.effect.prop(
      `${topic.name} rejects an unknown type`,
      [Arbitrary.make(topic.schema)],
      ([event]) =>
        Effect.gen(function*() {
          const json = JSON.parse(yield* topic.encode(event))
          const error = yield* Effect.flip(topic.decode(JSON.stringify({ ...json, type: `${json.type}Unknown` })))
          assert.isTrue(ParseResult.isParseError(error))
        })
    )
  }

  it("lists every topic and dead-letter topic with its partitions and retention", () => {
    const day = 24 * 60 * 60 * 1000
    const expected: ReadonlyArray<readonly [name: string, partitions: number, retentionDays: number]> = [
      ["member-events", 3, 7],
      ["member-events.DLT", 1, 30],
      ["auth.login.events", 3, 7],
      ["auth.login.events.DLT", 1, 30],
      ["order.created", 3, 7],
      ["order.created.dlt", 1, 30],
      ["order.inventory-failed", 3, 7],
      ["order.inventory-failed.dlt", 1, 30],
      ["order.inventory-reserved", 3, 7],
      ["order.inventory-reserved.dlt", 1, 30],
      ["order.status", 3, 7],
      ["order.status.dlt", 1, 30],
      ["catalog-events", 3, 7],
      ["catalog-events-dlq", 1, 30],
      ["order-events", 3, 7],
      ["order-events-dlq", 1, 30],
      ["coupon-issue-requests", 3, 7],
      ["coupon-issue-dlq", 1, 30]
    ]
    const listed = SeedTopics.all.flatMap((topic) => [
      [topic.name, topic.partitions, Duration.toMillis(topic.retention) / day, topic.cleanupPolicy] as const,
      [
        topic.deadLetter.name,
        topic.deadLetter.partitions,
        Duration.toMillis(topic.deadLetter.retention) / day,
        "delete"
      ] as const
    ])
    assert.deepStrictEqual(listed, expected.map(([name, partitions, days]) => [name, partitions, days, "delete"]))
  })
})
