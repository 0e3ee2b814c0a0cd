import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin, KafkaError, Producer } from "@kpipe/kafka"
import { Outbox, OutboxRelay } from "@kpipe/pipeline"
import { FaultProxy, KafkaFaults } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { createTopics, event, eventually, makeTopic, TestLive } from "./utils.ts"

const publishedOf = (topic: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_outbox WHERE topic = ${topic} AND status = 'PUBLISHED'`
  ).pipe(Effect.map((rows) => rows[0]!.n))

describe("OutboxRelay: a topic deleted while the relay publishes to it", () => {
  it.live(
    "its rows wait with the error recorded; the other topics' keys, on the same shards too, are still published",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const admin = yield* Admin.Admin
        const doomed = makeTopic("relay-deleted")
        const kept = makeTopic("relay-kept")
        yield* createTopics(doomed, kept)
        yield* OutboxRelay.run({ pollInterval: "200 millis" })
        // Keys on every shard for both topics, so claims hold rows of both.
        const doomedKeys = Array.from({ length: 40 }, (_, i) => `d${i}`)
        const keptKeys = Array.from({ length: 200 }, (_, i) => `k${i}`)
        yield* Outbox.append(doomed, ...doomedKeys.map((key) => event(key, 1)))
        yield* Outbox.append(kept, ...keptKeys.map((key) => event(key, 1)))
        yield* eventually(
          Effect.map(
            Effect.all([publishedOf(doomed.name), publishedOf(kept.name)]),
            ([d, k]) => d === doomedKeys.length && k === keptKeys.length
          ),
          "15 seconds",
          "both topics published before the deletion"
        )

        // The producer has sent to it, so it does not look it up again before the next send.
        yield* admin.deleteTopics([doomed.name])
        yield* admin.listTopics.pipe(
          Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (names) => !names.includes(doomed.name) }),
          Effect.timeout("20 seconds")
        )
        const deletedAt = Date.now()
        yield* Outbox.append(doomed, ...doomedKeys.map((key) => event(key, 2)))
        yield* Outbox.append(kept, ...keptKeys.map((key) => event(key, 2)))
        yield* eventually(
          Effect.map(publishedOf(kept.name), (n) => n === 2 * keptKeys.length),
          "20 seconds",
          "the other topic's later rows published"
        )
        const keptAfter = Date.now() - deletedAt

        const waiting = yield* sql<{ status: string; lastError: string | null }>`
          SELECT status, last_error FROM kpipe_outbox WHERE topic = ${doomed.name} AND status <> 'PUBLISHED'`
        assert.strictEqual(waiting.length, doomedKeys.length)
        assert.deepStrictEqual([...new Set(waiting.map((row) => row.status))], ["PENDING"])
        // Every waiting row was in a claim that found the topic gone, or is left out of claims since.
        const recorded = waiting.filter((row) => /not found/.test(row.lastError ?? "")).length
        assert.isAbove(recorded, 0, `the other topic published ${keptAfter} ms after the deletion`)
        assert.isBelow(keptAfter, 15_000)
        yield* admin.deleteTopics([kept.name])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})

describe("Producer: a send held by a broker that is away", () => {
  it.live(
    "waits for it: the lookups of its topics fail too, and that never reads as a topic not found",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("away-kept")
        yield* createTopics(topic)
        const proxy = yield* KafkaFaults.proxy
        const producer = yield* Layer.build(Producer.layer().pipe(Layer.provide(KafkaFaults.layerThrough(proxy)))).pipe(
          Effect.map((context) => Context.get(context, Producer.Producer))
        )
        const send = (value: string) => producer.send({ topic: topic.name, messages: [{ key: "k", value }] })
        yield* send("before")

        // Frozen as by SIGSTOP: kafkajs retries the send, and every lookup of its topics fails
        // (no answer), over several rounds of lookups.
        yield* proxy.set(FaultProxy.freeze)
        const sending = yield* Effect.fork(Effect.either(send("during")))
        yield* Effect.sleep("8 seconds")
        const early = yield* Fiber.poll(sending)
        yield* proxy.set(FaultProxy.pass)
        const result = yield* Fiber.join(sending)
        const missing = Either.match(result, {
          onLeft: (error) => KafkaError.missingTopics(error),
          onRight: () => []
        })
        assert.deepStrictEqual(missing, [], String(result))
        assert.isTrue(Option.isNone(early), `still waiting while the broker was away: ${String(early)}`)
        assert.isTrue(Either.isRight(result), String(result))
        // Kept as existing: the next send is not looked up first, and goes through.
        yield* send("after").pipe(Effect.retry({ schedule: Schedule.spaced("200 millis"), times: 25 }))
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})
