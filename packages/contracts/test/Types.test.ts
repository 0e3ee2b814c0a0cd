import { assert, describe, it } from "@effect/vitest"
import type { SeedTopics } from "@kpipe/contracts"
import { Ids, MemberEvents, OrderEvents } from "@kpipe/events"
import type * as Topic from "@kpipe/topic/Topic"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"

const produce = (_event: Topic.EventOf<typeof SeedTopics.memberEvents>) => true

const order = new OrderEvents.OrderCreated({
  eventId: Ids.EventId.make("5f0c6a8e-3b7d-4c51-9f3e-2a1b0c9d8e7f"),
  orderId: Ids.OrderId.make(1),
  userId: Ids.UserId.make(2),
  productId: Ids.ProductId.make(3),
  quantity: 1,
  amount: BigDecimal.make(1000n, 0),
  createdAt: DateTime.unsafeMake(0)
})

describe("compile-time checks (tsc fails if an @ts-expect-error line compiles)", () => {
  it("a topic accepts only its own events", () => {
    // @ts-expect-error an order is not a member event
    assert.isTrue(produce(order))
  })

  it("ids of different aggregates do not mix", () => {
    const member = {
      eventId: order.eventId,
      // @ts-expect-error a UserId is not a MemberId
      memberId: order.userId,
      occurredAt: order.createdAt,
      nickname: "kim"
    } satisfies ConstructorParameters<typeof MemberEvents.MemberCreated>[0]
    assert.strictEqual(member.memberId, 2)
  })

  it("an event cannot be built with an old version", () => {
    assert.throws(() =>
      new MemberEvents.MemberUpdated({
        eventId: order.eventId,
        memberId: Ids.MemberId.make(1),
        occurredAt: order.createdAt,
        nickname: "kim",
        changedFields: [],
        // @ts-expect-error version 1 is not the current MemberUpdated
        version: 1
      })
    )
  })
})
