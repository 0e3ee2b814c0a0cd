import { assert, describe, it } from "@effect/vitest"
import { Admin, KafkaClient } from "@kpipe/kafka"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"

// @kpipe/testing builds on this package, so these tests set up their own client.
const TestLive = Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))
const uniqueName = (prefix: string) => `${prefix}-${crypto.randomUUID()}`

describe("kafkajs consumer join (patched)", () => {
  // A broker that has not applied a new topic yet (just created, or the broker just came back)
  // answers UNKNOWN_TOPIC_OR_PARTITION to the metadata refresh the group's leader makes while it
  // joins. kafkajs gave up on the join at once and crashed the consumer (to restart it a while
  // later); CI saw such a crash right after a test made its topic on the 3-broker cluster. Here the
  // broker does not know one subscribed topic during the join, deterministically: it is deleted
  // after the subscription and made again a second later.
  it.live(
    "a subscribed topic unknown to the broker during the join is retried, not a crash",
    () =>
      Effect.gen(function*() {
        const { kafka } = yield* KafkaClient.KafkaClient
        const admin = yield* Admin.Admin
        const [stays, vanishes] = [uniqueName("join-stays"), uniqueName("join-vanishes")]
        yield* admin.createTopics([{ name: stays, partitions: 1 }, { name: vanishes, partitions: 1 }])
        const consumer = kafka.consumer({
          groupId: uniqueName("join-group"),
          sessionTimeout: 6_000,
          rebalanceTimeout: 10_000,
          heartbeatInterval: 500,
          retry: { restartOnFailure: () => Promise.resolve(false) }
        })
        yield* Effect.addFinalizer(() => Effect.promise(() => consumer.disconnect()))
        const crashes: Array<string> = []
        const joined = yield* Deferred.make<void>()
        consumer.on(consumer.events.CRASH, (event) => {
          crashes.push(String(event.payload.error))
        })
        consumer.on(consumer.events.GROUP_JOIN, () => Deferred.unsafeDone(joined, Effect.void))
        yield* Effect.promise(() => consumer.connect())
        yield* Effect.promise(() => consumer.subscribe({ topics: [stays, vanishes], fromBeginning: true }))

        yield* admin.deleteTopics([vanishes])
        yield* admin.listTopics.pipe(
          Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (names) => !names.includes(vanishes) }),
          Effect.timeout("20 seconds")
        )
        // `run` resolves once the member joined (or crashed trying).
        const running = yield* Effect.fork(Effect.promise(() => consumer.run({ eachBatch: () => Promise.resolve() })))
        yield* Effect.sleep("1 second")
        yield* admin.createTopics([{ name: vanishes, partitions: 1 }])

        yield* Fiber.join(running)
        yield* Deferred.await(joined).pipe(Effect.timeout("20 seconds"))
        assert.deepStrictEqual(crashes, [], "the consumer never crashed")
        yield* admin.deleteTopics([stays, vanishes])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})
