import { assert, describe, it } from "@effect/vitest"
import { Freshness } from "@kpipe/metrics-service"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/TestClock"

const at = (seconds: number) => ({ occurredAt: DateTime.unsafeMake(seconds * 1000) })
const gauge = (topic: string) =>
  Effect.map(Metric.value(Freshness.freshnessSeconds.pipe(Metric.tagged("topic", topic))), (state) => state.value)

describe("Freshness", () => {
  it.effect("a topic whose consumer stalls shows its own age beside the other topic's fresh events", () =>
    Effect.gen(function*() {
      const freshness = yield* Freshness.Freshness
      const catalog = "freshness-test-catalog"
      const orders = "freshness-test-orders"
      yield* TestClock.setTime(100_000)
      yield* freshness.applied(catalog)([at(95), at(90)])
      yield* freshness.applied(orders)([at(99)])
      yield* TestClock.adjust("60 seconds")
      // orders keep arriving; catalog's consumer has applied nothing since.
      yield* freshness.applied(orders)([at(158), at(150)])
      yield* freshness.applied(catalog)([at(80)])

      const status = yield* freshness.status()
      assert.deepStrictEqual(
        status.topics.map(({ topic, freshnessSeconds, newestEventAt }) => [
          topic,
          freshnessSeconds,
          DateTime.toEpochMillis(newestEventAt)
        ]),
        [[catalog, 65, 95_000], [orders, 2, 158_000]]
      )
      assert.strictEqual(status.freshnessSeconds, 2)
      assert.strictEqual(yield* gauge(catalog), 65)
      assert.strictEqual(yield* gauge(orders), 2)

      yield* TestClock.adjust("10 seconds")
      yield* freshness.report
      assert.strictEqual(yield* gauge(catalog), 75)
      assert.strictEqual(yield* gauge(orders), 12)
    }).pipe(Effect.provide(Freshness.Freshness.Default)))

  it.effect("the times kept from before a restart count from the start; an older event does not move them back", () =>
    Effect.gen(function*() {
      const freshness = yield* Freshness.Freshness
      const topic = "freshness-test-restarted"
      yield* TestClock.setTime(100_000)
      yield* freshness.seed([{ topic, at: DateTime.unsafeMake(40_000) }])
      assert.strictEqual(yield* gauge(topic), 60)
      yield* freshness.applied(topic)([at(30)])
      const status = yield* freshness.status()
      assert.deepStrictEqual(status.topics.map((t) => [t.topic, t.freshnessSeconds]), [[topic, 60]])
      yield* freshness.seed([{ topic, at: DateTime.unsafeMake(20_000) }])
      assert.strictEqual(yield* gauge(topic), 60)
    }).pipe(Effect.provide(Freshness.Freshness.Default)))

  it.effect("before any event: no figures, no topics", () =>
    Effect.gen(function*() {
      const status = yield* (yield* Freshness.Freshness).status()
      assert.deepStrictEqual(status.topics, [])
      assert.isUndefined(status.freshnessSeconds)
      assert.isUndefined(status.newestEventAt)
    }).pipe(Effect.provide(Freshness.Freshness.Default)))
})
