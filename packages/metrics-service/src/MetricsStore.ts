import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { ProductMetrics, type RankBy, Ranking, RankingEntry, type RankWindow } from "@kpipe/contracts/MetricsApi"
import { Ids, Money, ProductMetricsEvents } from "@kpipe/events"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { startOf } from "./internal/periods.ts"
import * as MetricsModel from "./MetricsModel.ts"

/**
 * A BIGINT figure (pg gives text). Past 2^53 − 1 it fails to decode rather than being rounded:
 * `Schema.Int` is a safe integer, and no text past it parses below it.
 */
const count = Schema.Union(Schema.NumberFromString, Schema.Number).pipe(Schema.compose(Schema.Int))
const productId = Schema.Union(Schema.NumberFromString, Schema.Number).pipe(Schema.compose(Ids.ProductId))

const MetricsRow = Schema.Struct({
  productId,
  likes: count,
  views: count,
  salesCount: count,
  salesAmount: Money.MoneySum,
  cancellations: count
})
const decodeRows = Schema.decodeUnknown(Schema.Array(MetricsRow))

const BucketRow = Schema.Struct({ period: Schema.Literal("day", "week"), starts: Schema.String, ...MetricsRow.fields })
const decodeBuckets = Schema.decodeUnknown(Schema.Array(BucketRow))

const decodeScores = Schema.decodeUnknown(Schema.Array(Schema.Struct({ productId, score: count })))

const iso = (at: DateTime.Utc) => DateTime.formatIso(at)
const encodeItems = Schema.encodeSync(Schema.Array(ProductMetricsEvents.OrderItem))
const json = (items: ReadonlyArray<ProductMetricsEvents.OrderItem>) => JSON.stringify(encodeItems(items))

const rankColumns: Record<RankBy, string> = { likes: "likes", views: "views", sales: "sales_count" }

/**
 * The metrics as stored: facts per like and per order, counts per product and per product and
 * day / ISO week (UTC). A batch of events is applied with one statement, whose figures follow
 * `MetricsModel`: each fact is upserted so that only a change of it counts, and the counts move by
 * exactly what the change adds or takes back.
 */
export class MetricsStore extends Effect.Service<MetricsStore>()("@kpipe/metrics-service/MetricsStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient

    /**
     * The shared tail: per-product and per-bucket increments from the `deltas` rows. The catalog and
     * the order consumers update the same products concurrently; rows are locked in key order
     * (products first, then buckets), so their transactions cannot deadlock.
     */
    const applyDeltas = sql`
      totals AS (
        INSERT INTO product_metrics AS m (product_id, likes, views, sales_count, sales_amount, cancellations)
        SELECT product_id, sum(likes), sum(views), sum(sales_count), sum(sales_amount), sum(cancellations)
        FROM deltas GROUP BY product_id ORDER BY product_id
        ON CONFLICT (product_id) DO UPDATE SET
          likes = m.likes + EXCLUDED.likes, views = m.views + EXCLUDED.views,
          sales_count = m.sales_count + EXCLUDED.sales_count, sales_amount = m.sales_amount + EXCLUDED.sales_amount,
          cancellations = m.cancellations + EXCLUDED.cancellations
        RETURNING 1
      ), buckets AS (
        INSERT INTO product_metric_buckets AS b
          (period, starts, product_id, likes, views, sales_count, sales_amount, cancellations)
        SELECT * FROM (
          SELECT 'day', (at AT TIME ZONE 'UTC')::date, product_id,
            sum(likes), sum(views), sum(sales_count), sum(sales_amount), sum(cancellations)
          FROM deltas GROUP BY 2, 3
          UNION ALL
          SELECT 'week', date_trunc('week', at AT TIME ZONE 'UTC')::date, product_id,
            sum(likes), sum(views), sum(sales_count), sum(sales_amount), sum(cancellations)
          FROM deltas GROUP BY 2, 3
        ) AS d ORDER BY 1, 2, 3
        ON CONFLICT (period, starts, product_id) DO UPDATE SET
          likes = b.likes + EXCLUDED.likes, views = b.views + EXCLUDED.views,
          sales_count = b.sales_count + EXCLUDED.sales_count, sales_amount = b.sales_amount + EXCLUDED.sales_amount,
          cancellations = b.cancellations + EXCLUDED.cancellations
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM totals)::int AS products`

    /** Likes and views, in one statement. */
    const applyCatalog = Effect.fn("MetricsStore.applyCatalog")(
      function*(events: ReadonlyArray<ProductMetricsEvents.CatalogEvent>) {
        // One upsert may touch a row once: a batch's events of one like are reduced to the latest first.
        const likes = new Map<string, { productId: number; userId: number; liked: boolean; at: number; iso: string }>()
        const views: Array<ProductMetricsEvents.ProductViewed> = []
        for (const event of events) {
          if (event.type === "ProductViewed") {
            views.push(event)
            continue
          }
          const key = `${event.productId}:${event.userId}`
          const next = {
            productId: event.productId,
            userId: event.userId,
            liked: event.type === "LikeAdded",
            at: DateTime.toEpochMillis(event.occurredAt),
            iso: iso(event.occurredAt)
          }
          const held = likes.get(key)
          if (held === undefined || MetricsModel.newer(next, held)) likes.set(key, next)
        }
        const l = [...likes.values()]
        yield* Effect.annotateCurrentSpan({ "metrics.likes": l.length, "metrics.views": views.length })
        yield* sql`
          WITH facts AS (
            INSERT INTO like_facts AS f (product_id, user_id, liked, at)
            SELECT * FROM unnest(
              ${l.map((x) => x.productId)}::bigint[], ${l.map((x) => x.userId)}::bigint[],
              ${l.map((x) => x.liked)}::bool[], ${l.map((x) => x.iso)}::timestamptz[])
            ON CONFLICT (product_id, user_id) DO UPDATE
              SET liked = EXCLUDED.liked, at = EXCLUDED.at, prev_liked = f.liked, prev_at = f.at
              WHERE (EXCLUDED.at, EXCLUDED.liked) > (f.at, f.liked)
            RETURNING product_id, liked, at, prev_liked, prev_at
          ), deltas AS (
            SELECT product_id, at, 1 AS likes, 0 AS views, 0 AS sales_count, 0::numeric AS sales_amount,
              0 AS cancellations
            FROM facts WHERE liked
            UNION ALL
            SELECT product_id, prev_at, -1, 0, 0, 0, 0 FROM facts WHERE prev_liked
            UNION ALL
            SELECT product_id, at, 0, 1, 0, 0, 0
            FROM unnest(${views.map((v) => v.productId)}::bigint[], ${
          views.map((v) => iso(v.occurredAt))
        }::timestamptz[])
              AS v(product_id, at)
          ), ${applyDeltas}`
      }
    )

    /** Order facts, in one statement: sales count while an order is created and not cancelled. */
    const applyOrders = Effect.fn("MetricsStore.applyOrders")(
      function*(events: ReadonlyArray<ProductMetricsEvents.OrderEvent>) {
        const orders = new Map<number, {
          created: string | null
          items: string | null
          cancelled: string | null
          cancelItems: string | null
          paid: string | null
        }>()
        for (const event of events) {
          let facts = orders.get(event.orderId)
          if (facts === undefined) {
            orders.set(
              event.orderId,
              facts = { created: null, items: null, cancelled: null, cancelItems: null, paid: null }
            )
          }
          if (event.type === "OrderCreated") {
            facts.created ??= iso(event.occurredAt)
            facts.items ??= json(event.items)
          } else if (event.type === "OrderCancelled") {
            facts.cancelled ??= iso(event.occurredAt)
            facts.cancelItems ??= json(event.items)
          } else {
            facts.paid ??= iso(event.occurredAt)
          }
        }
        const ids = [...orders.keys()]
        const o = [...orders.values()]
        yield* Effect.annotateCurrentSpan({ "metrics.orders": ids.length })
        yield* sql`
          WITH facts AS (
            INSERT INTO order_facts AS f (order_id, created_at, items, cancelled_at, cancel_items, paid_at)
            SELECT * FROM unnest(
              ${ids}::bigint[], ${o.map((x) => x.created)}::timestamptz[], ${o.map((x) => x.items)}::jsonb[],
              ${o.map((x) => x.cancelled)}::timestamptz[], ${o.map((x) => x.cancelItems)}::jsonb[],
              ${o.map((x) => x.paid)}::timestamptz[])
            ON CONFLICT (order_id) DO UPDATE SET
              created_at = COALESCE(f.created_at, EXCLUDED.created_at), items = COALESCE(f.items, EXCLUDED.items),
              cancelled_at = COALESCE(f.cancelled_at, EXCLUDED.cancelled_at),
              cancel_items = COALESCE(f.cancel_items, EXCLUDED.cancel_items),
              paid_at = COALESCE(f.paid_at, EXCLUDED.paid_at),
              prev_created_at = f.created_at, prev_cancelled_at = f.cancelled_at
            RETURNING created_at, items, cancelled_at, cancel_items, prev_created_at, prev_cancelled_at
          ), changes AS (
            SELECT created_at, items, cancelled_at, cancel_items,
              (created_at IS NOT NULL AND cancelled_at IS NULL)::int
                - (prev_created_at IS NOT NULL AND prev_cancelled_at IS NULL)::int AS live,
              cancelled_at IS NOT NULL AND prev_cancelled_at IS NULL AS newly_cancelled
            FROM facts
          ), deltas AS (
            SELECT i."productId" AS product_id, c.created_at AS at, 0 AS likes, 0 AS views,
              c.live * i.quantity AS sales_count, c.live * i.amount AS sales_amount, 0 AS cancellations
            FROM changes c CROSS JOIN LATERAL jsonb_to_recordset(c.items) AS i("productId" bigint, quantity int, amount numeric)
            WHERE c.live <> 0
            UNION ALL
            SELECT i."productId", c.cancelled_at, 0, 0, 0, 0, 1
            FROM changes c CROSS JOIN LATERAL (
              SELECT DISTINCT "productId" FROM jsonb_to_recordset(c.cancel_items) AS x("productId" bigint)
            ) i
            WHERE c.newly_cancelled
          ), ${applyDeltas}`
      }
    )

    const columns = sql`product_id, likes, views, sales_count, sales_amount::text AS sales_amount, cancellations`

    const get = Effect.fn("MetricsStore.get")(function*(productId: Ids.ProductId) {
      const rows = yield* decodeRows(yield* sql`SELECT ${columns} FROM product_metrics WHERE product_id = ${productId}`)
      return rows.length === 0
        ? new ProductMetrics({ productId, ...MetricsModel.zero() })
        : new ProductMetrics(rows[0]!)
    })

    /** Stored metrics of the products with ids above `after`, in id order. */
    const page = Effect.fn("MetricsStore.page")(function*(after: number, limit: number) {
      return (yield* decodeRows(
        yield* sql`SELECT ${columns} FROM product_metrics WHERE product_id > ${after} ORDER BY product_id LIMIT ${limit}`
      )).map((row) => new ProductMetrics(row))
    })

    const ofProducts = Effect.fn("MetricsStore.ofProducts")(function*(productIds: ReadonlyArray<number>) {
      return (yield* decodeRows(
        yield* sql`SELECT ${columns} FROM product_metrics WHERE product_id = ANY(${productIds}::bigint[])`
      )).map((row) => new ProductMetrics(row))
    })

    /** Every bucket (tests and the benchmark compare them with `MetricsModel`). */
    const buckets: Effect.Effect<ReadonlyArray<typeof BucketRow.Type>, SqlError | ParseResult.ParseError> = Effect
      .flatMap(sql`SELECT period, starts::text AS starts, ${columns} FROM product_metric_buckets`, decodeBuckets)

    /** The day and week buckets of `productIds`. */
    const bucketsOf = Effect.fn("MetricsStore.bucketsOf")(function*(productIds: ReadonlyArray<number>) {
      return yield* decodeBuckets(
        yield* sql`SELECT period, starts::text AS starts, ${columns} FROM product_metric_buckets
          WHERE product_id = ANY(${productIds}::bigint[])`
      )
    })

    const ranking = Effect.fn("MetricsStore.ranking")(
      function*(by: RankBy, window: RankWindow, limit: number) {
        const from = startOf(window, DateTime.toEpochMillis(yield* DateTime.now))
        const column = sql(rankColumns[by])
        const rows = yield* decodeScores(
          yield* sql`
          SELECT product_id, ${column} AS score FROM product_metric_buckets
          WHERE period = ${window} AND starts = ${from}::date AND ${column} > 0
          ORDER BY ${column} DESC, product_id
          LIMIT ${limit}`
        )
        return new Ranking({
          by,
          window,
          from,
          entries: rows.map((row, i) => new RankingEntry({ rank: i + 1, productId: row.productId, score: row.score }))
        })
      }
    )

    /**
     * In a consumer's transaction: the newest event time applied from each partition of `topic`
     * (`metrics_freshness`), never moved back.
     */
    const recordNewest = Effect.fn("MetricsStore.recordNewest")(function*(
      topic: string,
      delivered: ReadonlyArray<
        { readonly record: { readonly partition: number }; readonly event: { readonly occurredAt: DateTime.Utc } }
      >
    ) {
      const newest = new Map<number, number>()
      for (const { event, record } of delivered) {
        const at = DateTime.toEpochMillis(event.occurredAt)
        if (!((newest.get(record.partition) ?? -Infinity) >= at)) newest.set(record.partition, at)
      }
      if (newest.size === 0) return
      yield* sql`
        INSERT INTO metrics_freshness AS f (topic, partition, newest_event_at)
        SELECT ${topic}, * FROM unnest(
          ${[...newest.keys()]}::int[], ${[...newest.values()].map((at) => new Date(at).toISOString())}::timestamptz[])
        ON CONFLICT (topic, partition) DO UPDATE
          SET newest_event_at = greatest(f.newest_event_at, EXCLUDED.newest_event_at)`
    })

    /** Each topic's newest event time applied, as `recordNewest` kept it. */
    const newestEventTimes = Effect.fn("MetricsStore.newestEventTimes")(function*() {
      const rows = yield* sql<{ readonly topic: string; readonly at: number }>`
        SELECT topic, (extract(epoch FROM max(newest_event_at)) * 1000)::float8 AS at
        FROM metrics_freshness GROUP BY topic ORDER BY topic`
      return rows.map((row) => ({ topic: row.topic, at: DateTime.unsafeMake(row.at) }))
    })

    return {
      applyCatalog,
      applyOrders,
      recordNewest,
      newestEventTimes,
      get,
      page,
      ofProducts,
      buckets,
      bucketsOf,
      ranking
    } as const
  })
}) {}
