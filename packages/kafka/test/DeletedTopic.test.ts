import { assert, describe, it } from "@effect/vitest"
import { Admin, KafkaClient, KafkaError, Producer } from "@kpipe/kafka"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"

// @kpipe/testing builds on this package, so these tests set up their own client. Each test builds
// its own producer: what one test deletes must not be among another's producer's topics.
const TestLive = Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(KafkaClient.layerFromEnv))
const uniqueName = (prefix: string) => `${prefix}-${crypto.randomUUID()}`

/** Deletes `topic` and waits until the broker no longer lists it. */
const deleteTopic = (topic: string) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    yield* admin.deleteTopics([topic])
    yield* admin.listTopics.pipe(
      Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (names) => !names.includes(topic) }),
      Effect.timeout("20 seconds")
    )
  })

const message = (value: string) => ({ key: "k", value })

/** The send's result, or its failure, and how long it took; a send still waiting after 20 s is a hang. */
const timed = <A>(send: Effect.Effect<A, KafkaError.KafkaError>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const result = yield* send.pipe(Effect.timeout("20 seconds"), Effect.either)
    return { result, ms: Date.now() - started }
  })

/**
 * Two new topics, `deleted` and `other`; one record sent to `deleted` with `sendFirst`, then `deleted`
 * is deleted. The producer has sent to it, so it does not look it up again before its next send.
 */
const sentToThenDeleted = (
  partitions: number,
  sendFirst: (producer: Producer.Producer["Type"], topic: string) => Effect.Effect<unknown, KafkaError.KafkaError>
) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const producer = yield* Producer.Producer
    const deleted = uniqueName("deleted")
    const other = uniqueName("other")
    yield* admin.createTopics([{ name: deleted, partitions }, { name: other, partitions }])
    yield* sendFirst(producer, deleted)
    yield* deleteTopic(deleted)
    return { admin, producer, deleted, other }
  })

describe("Producer: a topic deleted after it was sent to", () => {
  it.live(
    "a send to it fails with TopicsNotFound within seconds, and sends to other topics go on",
    () =>
      Effect.gen(function*() {
        const { admin, deleted, other, producer } = yield* sentToThenDeleted(
          2,
          (producer, topic) => producer.send({ topic, messages: [message("before")] })
        )

        const first = yield* timed(producer.send({ topic: deleted, messages: [message("after")] }))
        assert.strictEqual(first.result._tag, "Left", `the send came back after ${first.ms} ms`)
        if (first.result._tag === "Left") {
          const error = first.result.left
          assert.instanceOf(error, KafkaError.KafkaError, String(error))
          if (error instanceof KafkaError.KafkaError) {
            assert.deepStrictEqual(KafkaError.missingTopics(error), [deleted], error.message)
            assert.strictEqual(error.reason, "Send")
            assert.strictEqual(error.retriable, false)
          }
        }
        assert.isBelow(first.ms, 10_000)

        // A topic this producer never sent to: its first send refreshes the metadata of every topic
        // the kafkajs producer has sent to, the deleted one included.
        const afterwards = yield* timed(producer.send({ topic: other, messages: [message("other")] }))
        assert.strictEqual(afterwards.result._tag, "Right", `after ${afterwards.ms} ms: ${String(afterwards.result)}`)

        // Known missing now: the producer looks it up before sending and fails at once.
        const again = yield* timed(producer.send({ topic: deleted, messages: [message("again")] }))
        assert.strictEqual(again.result._tag, "Left")
        if (again.result._tag === "Left") {
          const error = again.result.left
          assert.instanceOf(error, KafkaError.KafkaError, String(error))
          if (error instanceof KafkaError.KafkaError) assert.deepStrictEqual(KafkaError.missingTopics(error), [deleted])
        }
        assert.isBelow(again.ms, 5_000)

        // The send given up on ended with its producer: once the topic is back, only what is sent
        // after that is on it, and it is not written later either.
        yield* admin.createTopics([{ name: deleted, partitions: 2 }])
        yield* producer.send({ topic: deleted, messages: [message("recreated")] }).pipe(
          Effect.retry({ schedule: Schedule.spaced("200 millis"), times: 25 })
        )
        yield* Effect.sleep("3 seconds")
        const written = (yield* admin.endOffsets(deleted)).reduce((n, { high }) => n + Number(high), 0)
        assert.strictEqual(written, 1)
        yield* admin.deleteTopics([deleted, other])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a send to another topic is not held by the deleted one (its metadata refresh names every topic sent to)",
    () =>
      Effect.gen(function*() {
        const { admin, other, producer } = yield* sentToThenDeleted(
          1,
          (producer, topic) => producer.sendBatch([{ topic, messages: [message("before")] }])
        )

        const sent = yield* timed(producer.sendBatch([{ topic: other, messages: [message("other")] }]))
        assert.strictEqual(sent.result._tag, "Right", `after ${sent.ms} ms: ${String(sent.result)}`)
        assert.isBelow(sent.ms, 10_000)
        const next = yield* timed(producer.send({ topic: other, messages: [message("next")] }))
        assert.strictEqual(next.result._tag, "Right")
        assert.isBelow(next.ms, 2_000)
        yield* admin.deleteTopics([other])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})
