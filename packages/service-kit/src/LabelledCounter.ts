import type * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"

export interface LabelledCounter {
  /** The counter of one value of the label. */
  readonly counter: (value: string) => Metric.Metric.Counter<number>
  readonly increment: (value: string, by?: number) => Effect.Effect<void>
}

/**
 * A counter by the value of one label, each value's counter keyed with its label once: a
 * `Metric.tagged` counter derives and looks up its labelled key in the registry on every update,
 * which was a sizeable share of a hot endpoint's CPU time.
 */
export const make = (name: string, description: string, label: string): LabelledCounter => {
  const counters = new Map<string, Metric.Metric.Counter<number>>()
  const counter = (value: string) => {
    let found = counters.get(value)
    if (found === undefined) {
      found = Metric.fromMetricKey(
        MetricKey.counter(name, { description, incremental: true }).pipe(MetricKey.tagged(label, value))
      )
      counters.set(value, found)
    }
    return found
  }
  return { counter, increment: (value, by = 1) => Metric.incrementBy(counter(value), by) }
}
