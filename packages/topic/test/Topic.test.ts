import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Topic from "../src/Topic.ts"

class Created extends Schema.Class<Created>("Created")({
  type: Schema.Literal("Created"),
  version: Schema.Literal(1),
  eventId: Schema.String,
  id: Schema.String
}) {}

const options = {
  name: "things",
  partitions: 3,
  retention: "7 days",
  schema: Created,
  key: (event: Created) => event.id,
  deadLetter: { name: "things.DLT", retention: "14 days" }
} as const

describe("Topic", () => {
  it("replication defaults come from the cluster: min(3, brokers) copies, min ISR one less (1 on one broker)", () => {
    const topic = Topic.make(options)
    assert.strictEqual(topic.replicationFactor, undefined)
    assert.deepStrictEqual(
      [1, 2, 3, 5].map((brokers) => Topic.resolveReplication(topic, brokers)),
      [
        { replicationFactor: 1, minInSyncReplicas: 1 },
        { replicationFactor: 2, minInSyncReplicas: 1 },
        { replicationFactor: 3, minInSyncReplicas: 2 },
        { replicationFactor: 3, minInSyncReplicas: 2 }
      ]
    )
  })

  it("declared replication wins over the cluster's; the dead-letter topic inherits it unless it declares its own", () => {
    const topic = Topic.make({
      ...options,
      replicationFactor: 3,
      minInSyncReplicas: 3,
      config: { "max.message.bytes": "2000000" }
    })
    assert.deepStrictEqual(Topic.resolveReplication(topic, 5), { replicationFactor: 3, minInSyncReplicas: 3 })
    assert.deepStrictEqual(Topic.resolveReplication(topic.deadLetter, 5), {
      replicationFactor: 3,
      minInSyncReplicas: 3
    })
    assert.deepStrictEqual(topic.config, { "max.message.bytes": "2000000" })

    const own = Topic.make({
      ...options,
      replicationFactor: 3,
      deadLetter: { ...options.deadLetter, replicationFactor: 2 }
    })
    assert.deepStrictEqual(Topic.resolveReplication(own.deadLetter, 3), { replicationFactor: 2, minInSyncReplicas: 1 })
    assert.deepStrictEqual(Topic.resolveReplication(Topic.prefixed(own, "t-").deadLetter, 3), {
      replicationFactor: 2,
      minInSyncReplicas: 1
    })
  })

  it("segments roll after a day, or after the retention when it is shorter; a record stays readable for both", () => {
    const millis = (topic: Pick<Topic.Any, "segment" | "retention">) =>
      [topic.segment, Topic.readableFor(topic)].map((d) => Duration.toMillis(d))
    const hour = 60 * 60 * 1000
    assert.deepStrictEqual(millis(Topic.make(options)), [24 * hour, 8 * 24 * hour])
    assert.deepStrictEqual(millis(Topic.make({ ...options, retention: "2 hours" })), [2 * hour, 4 * hour])
    assert.deepStrictEqual(millis(Topic.make({ ...options, segment: "6 hours" })), [6 * hour, 7 * 24 * hour + 6 * hour])
    assert.deepStrictEqual(millis(Topic.prefixed(Topic.make({ ...options, segment: "6 hours" }), "t-")), [
      6 * hour,
      7 * 24 * hour + 6 * hour
    ])
  })

  it("settings that cannot work fail at declaration", () => {
    assert.throws(
      () => Topic.make({ ...options, replicationFactor: 2, minInSyncReplicas: 3 }),
      /exceeds replicationFactor/
    )
    assert.throws(() => Topic.make({ ...options, replicationFactor: 0 }), /integer >= 1/)
    assert.throws(() => Topic.make({ ...options, minInSyncReplicas: 1.5 }), /integer >= 1/)
    assert.throws(() => Topic.make({ ...options, config: { "retention.ms": "1" } }), /set retention/)
    assert.throws(() => Topic.make({ ...options, config: { "segment.ms": "1" } }), /set segment/)
    assert.throws(
      () =>
        Topic.make({ ...options, replicationFactor: 1, deadLetter: { ...options.deadLetter, minInSyncReplicas: 2 } }),
      /things\.DLT: minInSyncReplicas \(2\) exceeds replicationFactor \(1\)/
    )
  })
})

describe("Topic.decode", () => {
  class A extends Schema.Class<A>("A")({
    type: Schema.Literal("A"),
    version: Schema.Literal(1),
    eventId: Schema.String
  }) {}
  class B extends Schema.Class<B>("B")({
    type: Schema.Literal("B"),
    version: Schema.Literal(1),
    eventId: Schema.String
  }) {}
  const topic = Topic.make({
    ...options,
    schema: Schema.Union(A, B),
    key: (event: A | B) => event.eventId
  })

  it.effect("a value that makes the decoder throw is a ParseError, not a defect", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        topic.decode(JSON.stringify({ type: { toString: [] }, version: 1, eventId: "x" }))
      )
      assert.isTrue(ParseResult.isParseError(error))
      assert.include(error.message, "not decodable")
    }))
})
