import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"
import { AdminAuth } from "./Admin.ts"
import { productFigures } from "./CommerceApi.ts"
import * as Decimal from "./Decimal.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"

/** The contract of metrics-service (S3's aggregation): product metrics, rankings, freshness and reconciliation. */

/** The same figures as commerce-service's `ProductTotals`, as the events built them up. */
export class ProductMetrics extends Schema.Class<ProductMetrics>("ProductMetrics")(productFigures) {}

export const RankBy = Schema.Literal("likes", "views", "sales")
export type RankBy = typeof RankBy.Type

/** `day`: today (UTC); `week`: this ISO week (UTC, from Monday). */
export const RankWindow = Schema.Literal("day", "week")
export type RankWindow = typeof RankWindow.Type

export const maxRankingLimit = 100

export const RankingParams = Schema.Struct({
  by: RankBy,
  window: Schema.optionalWith(RankWindow, { exact: true }),
  limit: Schema.optionalWith(
    Decimal.FromString.pipe(Schema.compose(Schema.Int), Schema.between(1, maxRankingLimit)),
    { exact: true }
  )
})

export class RankingEntry extends Schema.Class<RankingEntry>("RankingEntry")({
  rank: Schema.Int,
  productId: Ids.ProductId,
  /** The figure ranked by, within the window (sales: units). */
  score: Schema.Int
}) {}

export class Ranking extends Schema.Class<Ranking>("Ranking")({
  by: RankBy,
  window: RankWindow,
  /** The first day of the window (UTC). */
  from: Schema.String,
  entries: Schema.Array(RankingEntry)
}) {}

/** How fresh the figures of one topic's events are. */
export class TopicFreshness extends Schema.Class<TopicFreshness>("TopicFreshness")({
  topic: Schema.String,
  /** Event time of the newest event of the topic applied. */
  newestEventAt: Schema.DateTimeUtc,
  /** Now minus `newestEventAt`. */
  freshnessSeconds: Schema.Number
}) {}

export class MetricsStatus extends Schema.Class<MetricsStatus>("MetricsStatus")({
  /** Event time of the newest event applied, of any topic; absent before the first. */
  newestEventAt: Schema.optionalWith(Schema.DateTimeUtc, { exact: true }),
  /** Now minus `newestEventAt`. */
  freshnessSeconds: Schema.optionalWith(Schema.Number, { exact: true }),
  /**
   * The same per topic, each topic once it has an applied event: one consumer stalled behind the
   * other's fresh events shows here, not in the figures above.
   */
  topics: Schema.Array(TopicFreshness),
  /** Events applied and duplicates skipped by this process. */
  applied: Schema.Number,
  duplicates: Schema.Number,
  /** duplicates / (applied + duplicates), 0 before any event. */
  duplicateRate: Schema.Number
}) {}

export const MetricField = Schema.Literal("likes", "views", "salesCount", "salesAmount", "cancellations")

export class Drift extends Schema.Class<Drift>("Drift")({
  productId: Ids.ProductId,
  /** Where the figure is: the product's totals when absent, else its bucket of that day / ISO week. */
  period: Schema.optionalWith(Schema.Literal("day", "week"), { exact: true }),
  /** The bucket's first day, `YYYY-MM-DD` (UTC). */
  starts: Schema.optionalWith(Schema.String, { exact: true }),
  field: MetricField,
  /** commerce-service's figure. */
  expected: Schema.String,
  /** metrics-service's figure. */
  actual: Schema.String
}) {}

export class ReconciliationReport extends Schema.Class<ReconciliationReport>("ReconciliationReport")({
  checkedProducts: Schema.Int,
  /** Day and week buckets compared. */
  checkedBuckets: Schema.Int,
  /** Products with a drift in their totals or in any of their buckets. */
  driftedProducts: Schema.Int,
  /** The first 100 differences. */
  drift: Schema.Array(Drift),
  /**
   * Products that differed at the first read but no longer once the consumers had caught up with
   * their topics: events in flight then (on Kafka, in a consumer's batch, or published meanwhile),
   * not drift. Events still in commerce-service's outbox are not waited for, and a product changed
   * again just before the second read differs again: under steady traffic a drift may still be lag.
   */
  inFlightProducts: Schema.Int,
  /**
   * Whether the consumers had applied everything on their topics before the second read. False
   * when they had not within `RECONCILIATION_SETTLE_TIMEOUT` (or their positions could not be
   * read): a drift reported may then still be lag.
   */
  consumersCaughtUp: Schema.Boolean,
  consistent: Schema.Boolean
}) {}

const productPath = Schema.Struct({ productId: Decimal.FromString.pipe(Schema.compose(Ids.ProductId)) })

export class MetricsGroup extends HttpApiGroup.make("metrics")
  .add(
    HttpApiEndpoint.get("ranking", "/api/products/ranking")
      .setUrlParams(RankingParams)
      .addSuccess(Ranking)
      .annotate(OpenApi.Description, "Top products by likes, views or units sold today or this week (UTC).")
  )
  .add(
    HttpApiEndpoint.get("productMetrics", "/api/products/:productId/metrics")
      .setPath(productPath)
      .addSuccess(ProductMetrics)
      .annotate(OpenApi.Description, "A product's metrics; zeros for a product no event has mentioned yet.")
  )
  .add(
    HttpApiEndpoint.get("status", "/api/metrics/status")
      .addSuccess(MetricsStatus)
  )
  .addError(ServiceUnavailable)
{}

/**
 * Admin (`Admin.AdminAuth`, the service's `ADMIN_TOKEN`): a reconciliation reads every product of
 * both services, so it is no endpoint for users behind the gateway.
 */
export class MetricsAdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("reconcile", "/api/metrics/reconciliation")
      .addSuccess(ReconciliationReport)
      .annotate(
        OpenApi.Description,
        "Recomputes every product's metrics, totals and day / week buckets, from commerce-service's tables and reports the drift."
      )
  )
  .addError(ServiceUnavailable)
  .middleware(AdminAuth)
{}

export class MetricsApi extends HttpApi.make("metrics-service").add(MetricsGroup).add(MetricsAdminGroup).annotate(
  OpenApi.Title,
  "metrics-service"
) {}
