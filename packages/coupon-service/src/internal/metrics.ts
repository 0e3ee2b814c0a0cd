import type * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"

/**
 * A counter by the value of one label, each value's counter keyed with its label once: a
 * `Metric.tagged` counter derives and looks up its labelled key in the registry on every update,
 * which was a sizeable share of the issue endpoint's CPU time.
 */
export const labelledCounter = (name: string, description: string, label: string) => {
  const counters = new Map<string, Metric.Metric.Counter<number>>()
  const counterOf = (value: string) => {
    let counter = counters.get(value)
    if (counter === undefined) {
      counter = Metric.fromMetricKey(
        MetricKey.counter(name, { description, incremental: true }).pipe(MetricKey.tagged(label, value))
      )
      counters.set(value, counter)
    }
    return counter
  }
  return (value: string, by = 1): Effect.Effect<void> => Metric.incrementBy(counterOf(value), by)
}
