import { assert, describe, it } from "@effect/vitest"
import { Ids, MemberEvents } from "@kpipe/events"
import * as Arbitrary from "effect/Arbitrary"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

const wire = Schema.parseJson(MemberEvents.MemberEvent)
// The wire format, as a topic carrying these events encodes it.
const topic = { encode: Schema.encode(wire), decode: Schema.decodeUnknown(wire) }
const currentVersion = { MemberCreated: 1, MemberUpdated: 2, MemberDeleted: 1 } as const

describe("MemberEvents", () => {
  it.effect("decodes a legacy v1 MemberUpdated as v2 with the nickname changed", () =>
    Effect.gen(function*() {
      const legacy = JSON.stringify({
        type: "MemberUpdated",
        version: 1,
        eventId: "5f0c6a8e-3b7d-4c51-9f3e-2a1b0c9d8e7f",
        memberId: 42,
        occurredAt: "2024-03-01T09:30:00.000Z",
        nickname: "kim"
      })
      const event = yield* topic.decode(legacy)
      assert.instanceOf(event, MemberEvents.MemberUpdated)
      assert.deepStrictEqual(JSON.parse(yield* topic.encode(event)), {
        ...JSON.parse(legacy),
        version: 2,
        changedFields: ["nickname"]
      })
    }))

  it.effect.prop(
    "every v1 MemberUpdated decodes to v2",
    [Arbitrary.make(MemberEvents.MemberUpdatedV1)],
    ([legacy]) =>
      Effect.gen(function*() {
        const json = yield* Schema.encode(Schema.parseJson(MemberEvents.MemberUpdatedV1))(legacy)
        assert.deepStrictEqual(
          yield* topic.decode(json),
          new MemberEvents.MemberUpdated({
            eventId: legacy.eventId,
            memberId: legacy.memberId,
            occurredAt: legacy.occurredAt,
            nickname: legacy.nickname,
            changedFields: ["nickname"]
          })
        )
      })
  )

  it.effect.prop(
    "encoding always writes the current version",
    [Arbitrary.make(MemberEvents.MemberEvent)],
    ([event]) =>
      Effect.gen(function*() {
        const json = JSON.parse(yield* topic.encode(event))
        assert.strictEqual(json.type, event.type)
        assert.strictEqual(json.version, currentVersion[event.type])
        assert.strictEqual("changedFields" in json, event.type === "MemberUpdated")
      })
  )

  it.effect.prop(
    "never encodes the legacy shape",
    [Arbitrary.make(MemberEvents.MemberUpdated)],
    ([event]) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Schema.encode(MemberEvents.MemberUpdatedFromV1)(event))
        assert.isTrue(ParseResult.isParseError(error))
      })
  )

  it.effect.prop(
    "rejects versions it does not know",
    [Arbitrary.make(MemberEvents.MemberEvent)],
    ([event]) =>
      Effect.gen(function*() {
        const json = JSON.parse(yield* topic.encode(event))
        for (const version of [0, 3, "2"]) {
          const error = yield* Effect.flip(topic.decode(JSON.stringify({ ...json, version })))
          assert.isTrue(ParseResult.isParseError(error))
        }
      })
  )

  it("fills in type and version in the constructor", () => {
    const event = new MemberEvents.MemberUpdated({
      eventId: Ids.EventId.make("5f0c6a8e-3b7d-4c51-9f3e-2a1b0c9d8e7f"),
      memberId: Ids.MemberId.make(1),
      occurredAt: Schema.decodeSync(Schema.DateTimeUtc)("2024-03-01T09:30:00.000Z"),
      nickname: "lee",
      changedFields: ["email"]
    })
    assert.strictEqual(event.type, "MemberUpdated")
    assert.strictEqual(event.version, 2)
  })
})
