import { assert, describe, it } from "@effect/vitest"
import { MetricsModel } from "@kpipe/metrics-service"
import { defaultShape, messedUp, plain } from "./history.ts"

const snapshot = (metrics: MetricsModel.Metrics) => ({
  totals: [...metrics.totals].map(([id, f]) => [id, plain(f)]).sort((a, b) => Number(a[0]) - Number(b[0])),
  buckets: [...metrics.buckets].map(([key, f]) => [key, plain(f)]).sort((a, b) =>
    String(a[0]).localeCompare(String(b[0]))
  )
})

describe("MetricsModel", () => {
  it.prop(
    "any interleaving and duplication of a history gives the metrics of the history applied once, in order",
    [messedUp(defaultShape)],
    ([{ deliveries, events }]) => {
      assert.deepStrictEqual(snapshot(MetricsModel.fold(deliveries)), snapshot(MetricsModel.fold(events)))
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "no figure is ever negative, whatever prefix of a messed-up delivery has arrived",
    [messedUp(defaultShape)],
    ([{ deliveries }]) => {
      const state = MetricsModel.empty()
      for (const event of deliveries) {
        MetricsModel.apply(state, event)
        for (const figures of MetricsModel.metrics(state).totals.values()) {
          const [likes, views, sales, amount, cancellations] = plain(figures)
          assert.isTrue(
            [likes, views, sales, cancellations].every((n) => Number(n) >= 0) && !String(amount).startsWith("-")
          )
        }
      }
    },
    { fastCheck: { numRuns: 100 } }
  )
})
