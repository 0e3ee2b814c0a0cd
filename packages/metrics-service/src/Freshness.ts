import { MetricsStatus, TopicFreshness } from "@kpipe/contracts/MetricsApi"
import { IdempotentConsumer } from "@kpipe/pipeline"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import { MetricsStore } from "./MetricsStore.ts"

/** Per topic, now minus the event time of the newest event of the topic applied (grows while nothing arrives). */
export const freshnessSeconds = Metric.gauge("kpipe_metrics_freshness_seconds", {
  description: "Per topic, now minus the event time of the newest applied event of the topic"
})

/** Per applied event, commit time minus event time: the time from a like, view or order to its figure. */
export const applyLag = Metric.summary({
  name: "kpipe_metrics_apply_lag_ms",
  description: "Commit of an event's figures minus its event time",
  maxAge: "5 minutes",
  maxSize: 20_000,
  error: 0.01,
  quantiles: [0.5, 0.9, 0.99]
})

/** Tracks how fresh the metrics are, per topic, after each committed batch. */
export class Freshness extends Effect.Service<Freshness>()("@kpipe/metrics-service/Freshness", {
  sync: () => {
    // Each topic's newest event time, and its gauge tagged with the topic.
    const newest = new Map<string, { at: DateTime.Utc; readonly gauge: typeof freshnessSeconds }>()

    const report = Effect.gen(function*() {
      const now = yield* DateTime.now
      for (const { at, gauge } of newest.values()) yield* Metric.set(gauge, DateTime.distance(at, now) / 1000)
    })

    const advance = (topic: string, latest: DateTime.Utc) => {
      const held = newest.get(topic)
      if (held === undefined) {
        newest.set(topic, { at: latest, gauge: freshnessSeconds.pipe(Metric.tagged("topic", topic)) })
      } else if (DateTime.greaterThan(latest, held.at)) held.at = latest
    }

    /** At start: each topic's newest event time applied before (`MetricsStore.newestEventTimes`). */
    const seed = (times: ReadonlyArray<{ readonly topic: string; readonly at: DateTime.Utc }>) =>
      Effect.suspend(() => {
        for (const { at, topic } of times) advance(topic, at)
        return report
      })

    /** After a commit of `topic`'s consumer: the events it applied. */
    const applied = (topic: string) => (events: ReadonlyArray<{ readonly occurredAt: DateTime.Utc }>) =>
      Effect.gen(function*() {
        if (events.length === 0) return
        const now = DateTime.toEpochMillis(yield* DateTime.now)
        let latest = events[0]!.occurredAt
        for (const event of events) {
          if (DateTime.greaterThan(event.occurredAt, latest)) latest = event.occurredAt
          yield* Metric.update(applyLag, now - DateTime.toEpochMillis(event.occurredAt))
        }
        advance(topic, latest)
        yield* report
      })

    const status = Effect.fn("Freshness.status")(function*() {
      const now = yield* DateTime.now
      const topics = [...newest].map(([topic, { at }]) =>
        new TopicFreshness({ topic, newestEventAt: at, freshnessSeconds: DateTime.distance(at, now) / 1000 })
      )
      const freshest = topics.reduce<TopicFreshness | undefined>(
        (best, topic) => best === undefined || topic.freshnessSeconds < best.freshnessSeconds ? topic : best,
        undefined
      )
      const applied = (yield* Metric.value(IdempotentConsumer.appliedTotal)).count
      const duplicates = (yield* Metric.value(IdempotentConsumer.duplicatesTotal)).count
      return new MetricsStatus({
        ...(freshest === undefined
          ? {}
          : { newestEventAt: freshest.newestEventAt, freshnessSeconds: freshest.freshnessSeconds }),
        topics,
        applied,
        duplicates,
        duplicateRate: applied + duplicates === 0 ? 0 : duplicates / (applied + duplicates)
      })
    })

    return { applied, seed, status, report } as const
  }
}) {}

/**
 * Starts from the newest event times the database kept (so a consumer stuck since the start shows
 * its age), then keeps the freshness gauges current while no event arrives.
 */
export const layerReporter = Layer.scopedDiscard(
  Effect.gen(function*() {
    const freshness = yield* Freshness
    yield* freshness.seed(yield* (yield* MetricsStore).newestEventTimes())
    yield* freshness.report.pipe(Effect.repeat(Schedule.spaced("1 second")), Effect.forkScoped)
  })
)
