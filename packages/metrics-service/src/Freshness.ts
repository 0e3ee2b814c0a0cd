import { MetricsStatus } from "@kpipe/contracts/MetricsApi"
import { IdempotentConsumer } from "@kpipe/pipeline"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"

/** Now minus the event time of the newest event applied (grows while nothing arrives). */
export const freshnessSeconds = Metric.gauge("kpipe_metrics_freshness_seconds", {
  description: "Now minus the event time of the newest applied catalog or order event"
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

/** Tracks how fresh the metrics are, after each committed batch. */
export class Freshness extends Effect.Service<Freshness>()("@kpipe/metrics-service/Freshness", {
  effect: Effect.gen(function*() {
    const newest = yield* Ref.make(Option.none<DateTime.Utc>())

    const report = Effect.gen(function*() {
      const held = yield* Ref.get(newest)
      if (Option.isNone(held)) return
      const now = yield* DateTime.now
      yield* Metric.set(freshnessSeconds, DateTime.distance(held.value, now) / 1000)
    })

    /** After a commit: the events it applied. */
    const applied = (events: ReadonlyArray<{ readonly occurredAt: DateTime.Utc }>) =>
      Effect.gen(function*() {
        if (events.length === 0) return
        const now = DateTime.toEpochMillis(yield* DateTime.now)
        let latest = events[0]!.occurredAt
        for (const event of events) {
          if (DateTime.greaterThan(event.occurredAt, latest)) latest = event.occurredAt
          yield* Metric.update(applyLag, now - DateTime.toEpochMillis(event.occurredAt))
        }
        yield* Ref.update(newest, (held) =>
          Option.isSome(held) && DateTime.greaterThanOrEqualTo(held.value, latest) ? held : Option.some(latest))
        yield* report
      })

    const status = Effect.fn("Freshness.status")(function*() {
      const held = yield* Ref.get(newest)
      const now = yield* DateTime.now
      const applied = (yield* Metric.value(IdempotentConsumer.appliedTotal)).count
      const duplicates = (yield* Metric.value(IdempotentConsumer.duplicatesTotal)).count
      return new MetricsStatus({
        ...Option.match(held, {
          onNone: () => ({}),
          onSome: (at) => ({ newestEventAt: at, freshnessSeconds: DateTime.distance(at, now) / 1000 })
        }),
        applied,
        duplicates,
        duplicateRate: applied + duplicates === 0 ? 0 : duplicates / (applied + duplicates)
      })
    })

    return { applied, status, report } as const
  })
}) {}

/** Keeps the freshness gauge current while no event arrives. */
export const layerReporter = Layer.scopedDiscard(
  Effect.flatMap(
    Freshness,
    (freshness) => freshness.report.pipe(Effect.repeat(Schedule.spaced("1 second")), Effect.forkScoped)
  )
)
