import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { CommerceApi, type ProductTotals } from "@kpipe/contracts/CommerceApi"
import { Drift, type MetricField, type ProductMetrics, ReconciliationReport } from "@kpipe/contracts/MetricsApi"
import { type Ids, Money } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import * as Arr from "effect/Array"
import * as BigDecimal from "effect/BigDecimal"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { Config } from "./Config.ts"
import { type Period, startOf } from "./internal/periods.ts"
import { MetricsStore } from "./MetricsStore.ts"
import * as Topics from "./Topics.ts"

/** commerce-service did not give its totals (unreachable, or an answer outside its contract). */
export class CommerceUnavailable extends Data.TaggedError("CommerceUnavailable")<{ readonly cause: unknown }> {
  override get message() {
    return `commerce-service's product totals could not be read: ${String(this.cause)}`
  }
}

/**
 * commerce-service refused the totals (401): `COMMERCE_ADMIN_TOKEN` (by default `ADMIN_TOKEN`) is
 * not its `ADMIN_TOKEN`. A deployment fault, not an outage: retrying will not help.
 */
export class CommerceUnauthorized extends Data.TaggedError("CommerceUnauthorized")<{ readonly message: string }> {}

type Figures = Pick<ProductTotals, "likes" | "views" | "salesCount" | "salesAmount" | "cancellations">

/** Where a figure is kept: a product's totals, or its bucket of one day / ISO week. */
export interface Bucket {
  readonly period: Period
  readonly starts: string
}

const counts = ["likes", "views", "salesCount", "cancellations"] as const

// A plain decimal, as the contracts carry a sum: `BigDecimal.format` writes 10^16 as "1e+16".
const formatSum = Schema.encodeSync(Money.MoneySum)

/** Where `actual` (absent: all zero) differs from `expected`, field by field. */
export const differences = (
  productId: Ids.ProductId,
  expected: Figures,
  actual: Figures | undefined,
  bucket?: Bucket
): Array<Drift> => {
  const drift: Array<Drift> = []
  const add = (field: typeof MetricField.Type, want: string, have: string) =>
    drift.push(new Drift({ productId, ...bucket, field, expected: want, actual: have }))
  for (const field of counts) {
    const have = actual?.[field] ?? 0
    if (expected[field] !== have) add(field, String(expected[field]), String(have))
  }
  const amount = actual?.salesAmount ?? BigDecimal.fromBigInt(0n)
  if (!BigDecimal.equals(expected.salesAmount, amount)) {
    add("salesAmount", formatSum(expected.salesAmount), formatSum(amount))
  }
  return drift
}

const zero = (): Figures => ({
  likes: 0,
  views: 0,
  salesCount: 0,
  salesAmount: BigDecimal.fromBigInt(0n),
  cancellations: 0
})

const plus = (a: Figures, b: Figures): Figures => ({
  likes: a.likes + b.likes,
  views: a.views + b.views,
  salesCount: a.salesCount + b.salesCount,
  salesAmount: BigDecimal.sum(a.salesAmount, b.salesAmount),
  cancellations: a.cancellations + b.cancellations
})

/**
 * A product's expected buckets from its figures per day: each day, and each ISO week as the sum of
 * its days. Keyed `period|starts`.
 */
export const bucketsOfDays = (days: ReadonlyArray<Figures & { readonly day: string }>) => {
  const buckets = new Map<string, Figures & Bucket>()
  for (const { day, ...figures } of days) {
    const at = Date.parse(`${day}T00:00:00Z`)
    for (const period of ["day", "week"] as const) {
      const starts = startOf(period, at)
      const key = `${period}|${starts}`
      buckets.set(key, { period, starts, ...plus(buckets.get(key) ?? zero(), figures) })
    }
  }
  return buckets
}

const pageSize = 1000
const reportedDrift = 100

/**
 * Collects the differences of a run: the first `reportedDrift`, how many products and buckets were
 * checked, and how many products drifted (in their totals or in any bucket). With `only`, the
 * differences of other products are left out (a second read keeps what drifted at the first).
 */
export const collector = (only?: ReadonlySet<number>) => {
  const drift: Array<Drift> = []
  let checked = 0
  let checkedBuckets = 0
  const drifted = new Set<number>()
  const record = (productId: number, found: ReadonlyArray<Drift>) => {
    if (found.length === 0 || (only !== undefined && !only.has(productId))) return
    drifted.add(productId)
    drift.push(...found.slice(0, Math.max(0, reportedDrift - drift.length)))
  }
  return {
    check: (expected: Figures & { readonly productId: Ids.ProductId }, actual: Figures | undefined) => {
      checked++
      record(expected.productId, differences(expected.productId, expected, actual))
    },
    /**
     * A product's buckets: every expected one against the stored one (absent: zero), and every
     * stored one nothing is expected in against zero.
     */
    checkBuckets: (
      productId: Ids.ProductId,
      expected: ReadonlyMap<string, Figures & Bucket>,
      actual: ReadonlyArray<Figures & Bucket>
    ) => {
      const stored = new Map(actual.map((bucket) => [`${bucket.period}|${bucket.starts}`, bucket]))
      for (const [key, bucket] of expected) {
        checkedBuckets++
        record(productId, differences(productId, bucket, stored.get(key), bucket))
      }
      for (const [key, bucket] of stored) {
        if (expected.has(key)) continue
        checkedBuckets++
        record(productId, differences(productId, zero(), bucket, bucket))
      }
    },
    drifted: (): ReadonlySet<number> => drifted,
    checked: () => ({ checkedProducts: checked, checkedBuckets }),
    report: (settled: { readonly inFlightProducts: number; readonly consumersCaughtUp: boolean } = {
      inFlightProducts: 0,
      consumersCaughtUp: true
    }) =>
      new ReconciliationReport({
        checkedProducts: checked,
        checkedBuckets,
        driftedProducts: drifted.size,
        drift,
        ...settled,
        consistent: drifted.size === 0
      })
  }
}

/**
 * Recomputes every product's metrics from commerce-service's tables (its `product-totals`, an admin
 * endpoint read with `COMMERCE_ADMIN_TOKEN`, page by page: totals and figures per day) and compares them with the stored totals and day / week buckets;
 * a product metrics-service holds but commerce-service does not know drifts too. When products
 * differ, it waits (at most `reconciliationSettle`) for the consumers to apply everything on their
 * topics, then reads both sides again: only what differs both times is drift, the rest was in flight.
 */
export class Reconciliation extends Effect.Service<Reconciliation>()("@kpipe/metrics-service/Reconciliation", {
  effect: Effect.gen(function*() {
    const store = yield* MetricsStore
    const config = yield* Config
    const admin = yield* Admin.Admin
    const topics = yield* Topics.resolve
    // The totals are an admin endpoint of commerce-service: its ADMIN_TOKEN, as COMMERCE_ADMIN_TOKEN.
    const commerce = yield* HttpApiClient.make(CommerceApi, {
      baseUrl: config.commerceUrl,
      transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(config.commerceAdminToken))
    })

    /** Every product of both sides, compared into `result`. */
    const read = (result: ReturnType<typeof collector>) =>
      Effect.gen(function*() {
        const known = new Set<number>()
        let after: number | undefined
        while (true) {
          const page = yield* commerce.admin.totals({
            urlParams: { limit: pageSize, ...(after === undefined ? {} : { after: after as never }) }
          }).pipe(Effect.mapError((cause) =>
            Predicate.isTagged(cause, "Unauthorized")
              ? new CommerceUnauthorized({
                message: `commerce-service refused the product totals (401 ${cause.message}): ` +
                  "COMMERCE_ADMIN_TOKEN (default: ADMIN_TOKEN) must be commerce-service's ADMIN_TOKEN"
              })
              : new CommerceUnavailable({ cause })
          ))
          const ids = page.totals.map((totals) => totals.productId)
          const stored = new Map((yield* store.ofProducts(ids)).map((metrics) => [metrics.productId, metrics]))
          const buckets = Arr.groupBy(yield* store.bucketsOf(ids), (bucket) => String(bucket.productId))
          for (const totals of page.totals) {
            known.add(totals.productId)
            result.check(totals, stored.get(totals.productId))
            result.checkBuckets(totals.productId, bucketsOfDays(totals.days), buckets[totals.productId] ?? [])
          }
          if (page.next === undefined) break
          after = page.next
        }
        let from = 0
        while (true) {
          const rows: ReadonlyArray<ProductMetrics> = yield* store.page(from, pageSize)
          const unknown = rows.filter((metrics) => !known.has(metrics.productId))
          const buckets = unknown.length === 0
            ? {}
            : Arr.groupBy(
              yield* store.bucketsOf(unknown.map((metrics) => metrics.productId)),
              (b) => String(b.productId)
            )
          for (const metrics of unknown) {
            result.check({ productId: metrics.productId, ...zero() }, metrics)
            result.checkBuckets(metrics.productId, new Map(), buckets[metrics.productId] ?? [])
          }
          if (rows.length < pageSize) break
          from = rows[rows.length - 1]!.productId
        }
        return result
      })

    /** Whether each consumer group's committed offsets have reached its topic's end (as it is now). */
    const caughtUp = Effect.gen(function*() {
      const marks = yield* Effect.forEach(
        [[topics.catalog.name, topics.catalogGroup], [topics.orders.name, topics.ordersGroup]] as const,
        ([topic, group]) => Effect.map(admin.endOffsets(topic), (ends) => ({ topic, group, ends }))
      )
      const reached = Effect.forEach(
        marks,
        ({ ends, group, topic }) =>
          Effect.map(admin.committedOffsets(group, topic), (committed) => {
            const at = new Map(committed.map((c) => [c.partition, BigInt(c.offset)]))
            return ends.every((end) =>
              BigInt(end.high) <= BigInt(end.low) || (at.get(end.partition) ?? -1n) >= BigInt(end.high)
            )
          })
      ).pipe(Effect.map(Arr.every((done) => done)))
      return yield* reached.pipe(Effect.repeat({ schedule: Schedule.spaced("200 millis"), until: (done) => done }))
    }).pipe(
      // The whole wait, end offsets included (a broker away answers them only after its retries).
      Effect.timeoutTo({ duration: config.reconciliationSettle, onSuccess: () => true, onTimeout: () => false }),
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logWarning("Reconciliation: the consumers' positions could not be read; reading again at once", error),
          false
        )
      )
    )

    const run = Effect.fn("Reconciliation.run")(function*() {
      const first = yield* read(collector())
      let report = first.report()
      if (!report.consistent) {
        const consumersCaughtUp = yield* caughtUp
        const second = yield* read(collector(first.drifted()))
        report = new ReconciliationReport({
          ...second.report({
            inFlightProducts: first.drifted().size - second.drifted().size,
            consumersCaughtUp
          }),
          ...first.checked()
        })
      }
      yield* Effect.annotateCurrentSpan({
        "metrics.checked": report.checkedProducts,
        "metrics.drifted": report.driftedProducts,
        "metrics.in_flight": report.inFlightProducts
      })
      return report
    })

    return { run } as const
  })
}) {}
