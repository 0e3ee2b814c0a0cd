import { assert, describe, it } from "@effect/vitest"
import { Admin, Consumer, Producer } from "@kpipe/kafka"
import { FaultProxy, KafkaFaults, TestKafka } from "@kpipe/testing"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { TestLive } from "./utils.ts"

describe("Consumer heartbeats (real broker, through a fault proxy)", () => {
  it.live(
    "a heartbeat lost with the connection is logged at Warning, and the slow batch still finishes",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const producer = yield* Producer.Producer
        const topic = TestKafka.uniqueName("heartbeat")
        yield* admin.createTopics([{ name: topic, partitions: 1 }])
        const proxy = yield* KafkaFaults.proxy
        const warnings: Array<{ readonly message: string; readonly groupId: unknown }> = []
        const recorder = Logger.make(({ annotations, logLevel, message }) => {
          if (logLevel._tag !== "Warning") return
          const first = Array.isArray(message) ? message[0] : message
          warnings.push({ message: String(first), groupId: Option.getOrUndefined(HashMap.get(annotations, "groupId")) })
        })
        const started = yield* Deferred.make<void>()
        const finished = yield* Deferred.make<number>()
        const groupId = TestKafka.uniqueName("heartbeat-group")
        yield* Consumer.runBatches(
          { groupId, topics: [topic], ...TestKafka.fastConsumer, heartbeatInterval: 300 },
          (batch) =>
            Deferred.succeed(started, undefined).pipe(
              Effect.zipRight(Effect.sleep("3 seconds")),
              Effect.zipRight(batch.done(batch.records.at(-1)!)),
              Effect.zipRight(Deferred.succeed(finished, batch.records.length))
            )
        ).pipe(
          Effect.provide(Layer.mergeAll(
            KafkaFaults.layerThrough(proxy),
            Logger.replace(Logger.defaultLogger, recorder),
            Logger.minimumLogLevel(LogLevel.Warning)
          ))
        )
        yield* producer.send({ topic, messages: [{ key: "k", value: "slow" }] })
        yield* Deferred.await(started)
        yield* proxy.during(FaultProxy.cut, Effect.sleep("1 second"))
        assert.strictEqual(yield* Deferred.await(finished).pipe(Effect.timeout("20 seconds")), 1)
        const heartbeats = warnings.filter(({ message }) => message.startsWith("Heartbeat failed"))
        assert.isAbove(heartbeats.length, 0, JSON.stringify(warnings))
        assert.strictEqual(heartbeats[0]!.groupId, groupId)
        yield* admin.deleteTopics([topic])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    60_000
  )
})
