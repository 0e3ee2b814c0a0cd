import * as HttpApiClient from "@effect/platform/HttpApiClient"
import { CommerceApi, type ProductTotals } from "@kpipe/contracts/CommerceApi"
import { Drift, type MetricField, type ProductMetrics, ReconciliationReport } from "@kpipe/contracts/MetricsApi"
import * as BigDecimal from "effect/BigDecimal"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { MetricsConfig } from "./Config.ts"
import { MetricsStore } from "./MetricsStore.ts"

/** commerce-service did not give its totals (unreachable, or an answer outside its contract). */
export class CommerceUnavailable extends Data.TaggedError("CommerceUnavailable")<{ readonly cause: unknown }> {
  override get message() {
    return `commerce-service's product totals could not be read: ${String(this.cause)}`
  }
}

type Figures = Pick<ProductTotals, "productId" | "likes" | "views" | "salesCount" | "salesAmount" | "cancellations">

const counts = ["likes", "views", "salesCount", "cancellations"] as const

/** Where `actual` (absent: all zero) differs from `expected`, field by field. */
export const differences = (expected: Figures, actual: Figures | undefined): Array<Drift> => {
  const drift: Array<Drift> = []
  const add = (field: typeof MetricField.Type, want: string, have: string) =>
    drift.push(new Drift({ productId: expected.productId, field, expected: want, actual: have }))
  for (const field of counts) {
    const have = actual?.[field] ?? 0
    if (expected[field] !== have) add(field, String(expected[field]), String(have))
  }
  const amount = actual?.salesAmount ?? BigDecimal.fromBigInt(0n)
  if (!BigDecimal.equals(expected.salesAmount, amount)) {
    add("salesAmount", BigDecimal.format(expected.salesAmount), BigDecimal.format(amount))
  }
  return drift
}

const pageSize = 1000
const reportedDrift = 100

/** Collects the differences of a run: the first `reportedDrift`, and how many products drifted. */
export const collector = () => {
  const drift: Array<Drift> = []
  let checked = 0
  let drifted = 0
  return {
    check: (expected: Figures, actual: Figures | undefined) => {
      checked++
      const found = differences(expected, actual)
      if (found.length === 0) return
      drifted++
      drift.push(...found.slice(0, Math.max(0, reportedDrift - drift.length)))
    },
    report: () =>
      new ReconciliationReport({
        checkedProducts: checked,
        driftedProducts: drifted,
        drift,
        consistent: drifted === 0
      })
  }
}

/**
 * Recomputes every product's metrics from commerce-service's tables (its `product-totals`, page by
 * page) and compares them with the stored ones; a product metrics-service holds but commerce-service
 * does not know drifts too. 0 drift once every event up to the read has been applied.
 */
export class Reconciliation extends Effect.Service<Reconciliation>()("@kpipe/metrics-service/Reconciliation", {
  effect: Effect.gen(function*() {
    const store = yield* MetricsStore
    const config = yield* MetricsConfig
    const commerce = yield* HttpApiClient.make(CommerceApi, { baseUrl: config.commerceUrl })

    const run = Effect.fn("Reconciliation.run")(function*() {
      const result = collector()
      const known = new Set<number>()
      let after: number | undefined
      while (true) {
        const page = yield* commerce.catalog.totals({
          urlParams: { limit: pageSize, ...(after === undefined ? {} : { after: after as never }) }
        }).pipe(Effect.mapError((cause) => new CommerceUnavailable({ cause })))
        const ids = page.totals.map((totals) => totals.productId)
        const stored = new Map((yield* store.ofProducts(ids)).map((metrics) => [metrics.productId, metrics]))
        for (const totals of page.totals) {
          known.add(totals.productId)
          result.check(totals, stored.get(totals.productId))
        }
        if (page.next === undefined) break
        after = page.next
      }
      let from = 0
      while (true) {
        const rows: ReadonlyArray<ProductMetrics> = yield* store.page(from, pageSize)
        for (const metrics of rows) {
          if (!known.has(metrics.productId)) {
            result.check({
              ...metrics,
              likes: 0,
              views: 0,
              salesCount: 0,
              salesAmount: BigDecimal.fromBigInt(0n),
              cancellations: 0
            }, metrics)
          }
        }
        if (rows.length < pageSize) break
        from = rows[rows.length - 1]!.productId
      }
      const report = result.report()
      yield* Effect.annotateCurrentSpan({
        "metrics.checked": report.checkedProducts,
        "metrics.drifted": report.driftedProducts
      })
      return report
    })

    return { run } as const
  })
}) {}
