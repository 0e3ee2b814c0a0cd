import { assert, describe, it } from "@effect/vitest"
import { Admin, Consumer, KafkaClient, Producer } from "@kpipe/kafka"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import kafkajs, { type PartitionAssigner } from "kafkajs"

// @kpipe/testing builds on this package, so these tests set up their own client.
const TestLive = Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(KafkaClient.layerFromEnv))
const uniqueName = (prefix: string) => `${prefix}-${crypto.randomUUID()}`
const fastConsumer = { sessionTimeout: 6_000, rebalanceTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 100 }

/** Round robin under another protocol name: a member using it shares no protocol with ours. */
const otherAssigner: PartitionAssigner = (config) => {
  const roundRobin = kafkajs.PartitionAssigners.roundRobin(config)
  return {
    ...roundRobin,
    name: "OtherAssigner",
    protocol: (subscription) => ({ ...roundRobin.protocol(subscription), name: "OtherAssigner" })
  }
}

const keys = Array.from({ length: 10 }, (_, i) => `key-${i}`)
const perKey = 50

describe("Kafka (real broker)", () => {
  it.live(
    "creates a topic and keeps per-key order through a consumer group with manual commits",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const producer = yield* Producer.Producer
        const topic = uniqueName("smoke")
        const groupId = uniqueName("smoke-group")

        assert.deepStrictEqual(yield* admin.createTopics([{ name: topic, partitions: 3 }]), [topic])
        assert.deepStrictEqual(yield* admin.createTopics([{ name: topic, partitions: 3 }]), [])

        for (let seq = 0; seq < perKey; seq++) {
          yield* producer.send({
            topic,
            messages: keys.map((key) => ({
              key,
              value: JSON.stringify({ key, seq }),
              headers: { "x-seq": String(seq) }
            }))
          })
        }

        const received = yield* Queue.unbounded<Consumer.ConsumerRecord>()
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Consumer.run(
            { groupId, topics: [topic], ...fastConsumer },
            (record) => Queue.offer(received, record)
          )
          while ((yield* Queue.size(received)) < keys.length * perKey) yield* Effect.sleep("50 millis")
        }))

        const records = yield* Queue.takeAll(received)
        assert.strictEqual(records.length, keys.length * perKey)
        const seen = new Map<string, Array<number>>()
        const partitionOfKey = new Map<string, number>()
        for (const record of records) {
          const { key, seq } = JSON.parse(record.value!.toString()) as { key: string; seq: number }
          assert.strictEqual(record.key?.toString(), key)
          assert.strictEqual(record.headers["x-seq"], String(seq))
          seen.set(key, [...(seen.get(key) ?? []), seq])
          assert.strictEqual(partitionOfKey.get(key) ?? record.partition, record.partition)
          partitionOfKey.set(key, record.partition)
        }
        for (const key of keys) {
          assert.deepStrictEqual(seen.get(key), Array.from({ length: perKey }, (_, i) => i))
        }

        const committed = yield* admin.committedOffsets(groupId, topic)
        const total = committed.reduce((sum, { offset }) => sum + Number(offset), 0)
        assert.strictEqual(total, keys.length * perKey)
        const ends = yield* admin.endOffsets(topic)
        assert.deepStrictEqual(ends.map(({ partition }) => partition).sort(), [0, 1, 2])
        assert.deepStrictEqual(
          ends.map(({ partition, high }) => ({ partition, offset: high })).sort((a, b) => a.partition - b.partition),
          [...committed].sort((a, b) => a.partition - b.partition)
        )
        yield* admin.deleteTopics([topic])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "minBytes: records sent one at a time arrive in one batch once the fetch has that many bytes",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const producer = yield* Producer.Producer
        const topic = uniqueName("min-bytes")
        yield* admin.createTopics([{ name: topic, partitions: 1 }])
        const value = "x".repeat(2_000)
        const batches = yield* Queue.unbounded<number>()
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Consumer.runBatches(
            {
              groupId: uniqueName("min-bytes-group"),
              topics: [topic],
              ...fastConsumer,
              maxWaitTimeInMs: 3_000,
              minBytes: 19_500
            },
            (batch) => Effect.zipRight(Queue.offer(batches, batch.records.length), batch.done(batch.records.at(-1)!))
          )
          // A first record, alone after maxWaitTimeInMs: from then on the consumer is fetching.
          yield* producer.send({ topic, messages: [{ key: "k", value: "first" }] })
          assert.strictEqual(yield* Queue.take(batches), 1)
          // Nine of these (~2.1 kB each on the wire) are not enough, the tenth is.
          for (let i = 0; i < 10; i++) {
            yield* producer.send({ topic, messages: [{ key: "k", value }] })
            yield* Effect.sleep("40 millis")
          }
          assert.strictEqual(yield* Queue.take(batches), 10)
        }))
        yield* admin.deleteTopics([topic])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 30_000 }
  )

  it.live(
    "a member kafkajs leaves down after a non-retriable error is started again and joins",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const producer = yield* Producer.Producer
        const { kafka } = yield* KafkaClient.KafkaClient
        const topic = uniqueName("restart")
        const groupId = uniqueName("restart-group")
        yield* admin.createTopics([{ name: topic, partitions: 1 }])

        // A member of another protocol holds the group: ours is refused (INCONSISTENT_GROUP_PROTOCOL,
        // not retriable, so kafkajs does not restart it) until that member leaves.
        const other = kafka.consumer({ groupId, partitionAssigners: [otherAssigner], ...fastConsumer })
        yield* Effect.promise(() => {
          const joined = new Promise<void>((resolve) => other.on(other.events.GROUP_JOIN, () => resolve()))
          return other.connect()
            .then(() => other.subscribe({ topics: [topic] }))
            .then(() => other.run({ eachMessage: () => Promise.resolve() }))
            .then(() => joined)
        })
        yield* Effect.addFinalizer(() => Effect.promise(() => other.disconnect()))

        const states: Array<string> = []
        const observer = Layer.succeed(Consumer.Observer, { member: (_, state) => states.push(state) })
        const received = yield* Queue.unbounded<Consumer.ConsumerRecord>()
        const member = yield* Consumer.run(
          { groupId, topics: [topic], ...fastConsumer },
          (record) => Queue.offer(received, record)
        ).pipe(Effect.provide(observer), Effect.forkScoped)
        while (!states.includes("crashed")) yield* Effect.sleep("50 millis")
        yield* Effect.promise(() => other.disconnect())

        yield* Effect.fromFiber(member)
        yield* producer.send({ topic, messages: [{ key: "k", value: "after the restart" }] })
        const record = yield* Queue.take(received).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(record.value?.toString(), "after the restart")
        assert.deepStrictEqual(states.slice(0, 2), ["joining", "crashed"])
        assert.strictEqual(states.at(-1), "joined")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    60_000
  )

  it.live(
    "interrupted, as a service is on SIGTERM, a consumer disconnects: it leaves its group at once",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const topic = uniqueName("interrupted")
        const groupId = uniqueName("interrupted-group")
        yield* admin.createTopics([{ name: topic, partitions: 1 }])
        const joined = yield* Deferred.make<void>()
        const observer = Layer.succeed(Consumer.Observer, {
          member: (_, state) => state === "joined" && Deferred.unsafeDone(joined, Effect.void)
        })
        const member = yield* Consumer.run({ groupId, topics: [topic], ...fastConsumer }, () => Effect.void).pipe(
          Effect.zipRight(Effect.never),
          Effect.scoped,
          Effect.provide(observer),
          Effect.fork
        )
        yield* Deferred.await(joined)
        assert.strictEqual((yield* admin.describeGroup(groupId)).memberIds.length, 1)
        // Finalizers run on the interrupted fiber: an `interruptible` outside the disconnect's
        // timeout ended it before kafkajs was asked to disconnect, and the member stayed, fetching.
        yield* Fiber.interrupt(member)
        assert.deepStrictEqual((yield* admin.describeGroup(groupId)).memberIds, [])
        yield* admin.deleteTopics([topic])
      }).pipe(Effect.provide(TestLive)),
    30_000
  )

  it.live("an idle broker connection sets no timer: kafkajs's request queue does not poll itself every 1 ms", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const producer = yield* Producer.Producer
      const topic = uniqueName("idle")
      yield* admin.createTopics([{ name: topic, partitions: 1 }])
      yield* producer.send({ topic, messages: [{ key: "k", value: "v" }] })
      // Timers set from kafkajs's RequestQueue while the connections are idle for a second.
      const fromQueue = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const original = globalThis.setTimeout
          const counted = { timers: 0, restore: () => void (globalThis.setTimeout = original) }
          globalThis.setTimeout = ((...args: Parameters<typeof original>) => {
            if (new Error().stack?.includes("requestQueue")) counted.timers++
            return original(...args)
          }) as typeof original
          return counted
        }),
        (counted) => Effect.sync(counted.restore)
      )
      yield* Effect.sleep("1 second")
      fromQueue.restore()
      // Before the patch: ~900 (each check scheduled the next 1 ms later, for as long as it lived).
      assert.strictEqual(fromQueue.timers, 0)
    }).pipe(Effect.scoped, Effect.provide(TestLive)))

  it.live("fails with a typed KafkaError when no broker answers", () =>
    Effect.gen(function*() {
      const error = yield* Producer.layer({ idempotent: false, retries: 0 }).pipe(
        Layer.provide(
          KafkaClient.layer({ brokers: ["127.0.0.1:1"], clientId: "unreachable", connectionTimeout: 500, retries: 0 })
        ),
        Layer.build,
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "KafkaError")
      assert.strictEqual(error.reason, "Connect")
    }))

  it.live("rejects an idempotent producer without retries as a typed configuration error", () =>
    Effect.gen(function*() {
      const error = yield* Producer.layer({ retries: 0 }).pipe(
        Layer.provide(KafkaClient.layerFromEnv),
        Layer.build,
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "KafkaError")
      assert.include(error.message, "Idempotent producer must allow retries")
      if (error._tag === "KafkaError") assert.strictEqual(error.reason, "Configure")
    }))
})
