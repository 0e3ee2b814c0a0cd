import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { Publisher } from "@kpipe/pipeline"
import { FaultProxy, KafkaFaults } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { createTopics, decodeValue, event, KafkaLive, makeTopic, readTopic, TestEvent } from "./utils.ts"

const requests = (topic: string) =>
  Metric.value(Metric.tagged(Publisher.batchSize, "topic", topic)).pipe(
    Effect.map(({ count, sum }) => ({ count, sum }))
  )

describe("Publisher.makeBatched (real broker)", () => {
  it.live("merges concurrent calls into few producer requests; each caller gets its own outcome", () =>
    Effect.gen(function*() {
      const topic = makeTopic("batched")
      yield* createTopics(topic)
      const batched = yield* Publisher.makeBatched(topic, { maxBatch: 500 })
      const events = Array.from({ length: 200 }, (_, i) => event(`k${i % 7}`, i))
      // Not an Int: only this caller fails (Encode), the others are sent.
      const broken = new TestEvent({ eventId: crypto.randomUUID(), key: "k0", seq: 0.5 }, { disableValidation: true })
      const outcomes = yield* Effect.forEach(
        [...events.slice(0, 100), broken, ...events.slice(100)],
        (e) => Effect.exit(batched.publish(e)),
        { concurrency: "unbounded" }
      )
      const failures = outcomes.flatMap((exit) =>
        Exit.isFailure(exit) ? [Option.getOrThrow(Exit.causeOption(exit))] : []
      )
      assert.strictEqual(failures.length, 1)
      assert.isTrue(Exit.isFailure(outcomes[100]!))
      const error = yield* Effect.flip(batched.publish(broken))
      assert.deepStrictEqual([error._tag, error.reason, error.topic], ["PublishError", "Encode", topic.name])

      const { count, sum } = yield* requests(topic.name)
      assert.strictEqual(sum, events.length)
      assert.isBelow(count, events.length / 4, `${events.length} calls went out in ${count} producer requests`)

      const records = yield* readTopic(topic.name, events.length)
      assert.deepStrictEqual(
        records.map((r) => [r.key?.toString(), decodeValue(r).eventId, r.headers["kpipe-event-id"]]).sort(),
        events.map((e) => [e.key, e.eventId, e.eventId]).sort()
      )
      assert.isTrue(records.every((r) => r.headers["kpipe-event-type"] === "TestEvent"))
    }).pipe(Effect.scoped, Effect.provide(KafkaLive)))

  it.live("keeps each key's events in call order, with several lanes", () =>
    Effect.gen(function*() {
      const topic = makeTopic("batched-order")
      yield* createTopics(topic)
      const batched = yield* Publisher.makeBatched(topic, { maxBatch: 16, lanes: 4 })
      const keys = ["a", "b", "c", "d", "e", "f"]
      const events = Array.from({ length: 600 }, (_, i) => event(keys[i % keys.length]!, i))
      yield* Effect.forEach(events, (e) => batched.publish(e), { concurrency: "unbounded", discard: true })

      const records = yield* readTopic(topic.name, events.length)
      const perKey = new Map<string, Array<number>>()
      for (
        const record of [...records].sort((a, b) => a.partition - b.partition || Number(a.offset) - Number(b.offset))
      ) {
        const decoded = decodeValue(record)
        perKey.set(decoded.key, [...(perKey.get(decoded.key) ?? []), decoded.seq])
      }
      for (const key of keys) {
        const sent = events.filter((e) => e.key === key).map((e) => e.seq)
        assert.deepStrictEqual(perKey.get(key), sent, `key ${key}`)
      }
      assert.isAbove((yield* requests(topic.name)).count, 4)
    }).pipe(Effect.scoped, Effect.provide(KafkaLive)))

  it.live(
    "a failed request fails all of its callers with Send; once its scope closed it answers ShuttingDown",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("batched-missing")
        const scope = yield* Scope.make()
        // The topic does not exist: the producer gives up after one retry.
        const batched = yield* Publisher.makeBatched(topic, { producer: { retries: 1 } }).pipe(Scope.extend(scope))
        const errors = yield* Effect.forEach(
          [event("a", 1), event("b", 2), event("c", 3)],
          (e) => Effect.flip(batched.publish(e)),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(errors.map((e) => e.reason), ["Send", "Send", "Send"])
        yield* Scope.close(scope, Exit.void)
        const closed = yield* Effect.flip(batched.publish(event("a", 4)))
        assert.strictEqual(closed.reason, "ShuttingDown")
      }).pipe(Effect.provide(KafkaLive)),
    { timeout: 60_000 }
  )

  it.live(
    "an event queued past maxQueueTime behind a send the broker holds fails Expired and is never written",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("batched-expired", 1)
        yield* createTopics(topic)
        const proxy = yield* KafkaFaults.proxy
        const batched = yield* Publisher.makeBatched(topic, { maxBatch: 1, maxQueueTime: "300 millis" }).pipe(
          Effect.provide(KafkaFaults.layerThrough(proxy, { requestTimeout: 10_000 }))
        )
        const [before, held, queued, after] = [event("k", 0), event("k", 1), event("k", 2), event("k", 3)]
        yield* batched.publish(before)
        yield* proxy.set(FaultProxy.freeze)
        const heldSend = yield* Effect.fork(batched.publish(held))
        yield* Effect.sleep("100 millis")
        const queuedSend = yield* Effect.fork(batched.publish(queued))
        yield* Effect.sleep("1 second")
        yield* proxy.set(FaultProxy.pass)
        yield* Fiber.join(heldSend)
        const expired = yield* Effect.flip(Fiber.join(queuedSend))
        assert.deepStrictEqual([expired._tag, expired.reason], ["PublishError", "Expired"])
        yield* batched.publish(after)
        const records = yield* readTopic(topic.name, 3)
        assert.deepStrictEqual(records.map((r) => decodeValue(r).seq), [0, 1, 3])
        const ends = yield* Effect.flatMap(Admin.Admin, (admin) => admin.endOffsets(topic.name))
        assert.deepStrictEqual(ends.map((partition) => partition.high), ["3"], "the expired event written")
      }).pipe(Effect.scoped, Effect.provide(KafkaLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a call handed to a waiting sender just as the scope closes answers ShuttingDown, is not left waiting",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("batched-closing")
        yield* createTopics(topic)
        const answers = yield* Effect.forEach(Array.from({ length: 5 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const batched = yield* Publisher.makeBatched(topic).pipe(Scope.extend(scope))
            yield* Effect.sleep("10 millis")
            // Forked in this order, the call is offered to the sender's `take` before the close
            // interrupts the sender, and the sender has not run since.
            const caller = yield* Effect.fork(batched.publish(event("a", i)))
            yield* Fiber.join(yield* Effect.fork(Scope.close(scope, Exit.void)))
            return yield* Fiber.await(caller).pipe(Effect.timeout("2 seconds"), Effect.option)
          }))
        assert.strictEqual(answers.filter(Option.isNone).length, 0, "calls left waiting")
        const reasons = answers.map((answer) =>
          Option.flatMap(
            answer,
            (exit) => Exit.isFailure(exit) ? Option.map(Exit.causeOption(exit), String) : Option.none()
          )
        )
        assert.isTrue(
          reasons.every((reason) => Option.exists(reason, (text) => text.includes("ShuttingDown"))),
          String(reasons)
        )
      }).pipe(Effect.provide(KafkaLive)),
    { timeout: 60_000 }
  )
})
