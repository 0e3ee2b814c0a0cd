import { SqlClient } from "@effect/sql/SqlClient"
import {
  type CreateProductRequest,
  DayTotals,
  LikeState,
  Product,
  ProductNotFound,
  ProductPage,
  ProductTotals,
  TotalsPage,
  ViewRecorded
} from "@kpipe/contracts/CommerceApi"
import { type Ids, ProductMetricsEvents } from "@kpipe/events"
import { Outbox } from "@kpipe/pipeline"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { newEventId, ProductRow, TimeRow, TotalsRow } from "./internal/rows.ts"
import * as Topics from "./Topics.ts"

const decodeProduct = Schema.decodeUnknown(ProductRow)
const decodeProducts = Schema.decodeUnknown(Schema.Array(ProductRow))
const decodeTime = Schema.decodeUnknown(TimeRow)
const decodeTotals = Schema.decodeUnknown(Schema.Array(TotalsRow))

export interface Page {
  readonly after?: Ids.ProductId | undefined
  readonly limit?: number | undefined
}

/** Pages `rows` fetched with one row more than `limit`: the extra one says there is a next page. */
const paged = <A extends { readonly productId: Ids.ProductId }>(rows: ReadonlyArray<A>, limit: number) =>
  rows.length > limit
    ? { items: rows.slice(0, limit), next: Option.some(rows[limit - 1]!.productId) }
    : { items: rows, next: Option.none<Ids.ProductId>() }

/**
 * The catalog: products, likes and views. Each like, unlike and view commits together with its
 * event on `catalog-events` (key: the product). A like that already stands, or an unlike without a
 * standing like, writes nothing and publishes nothing. A like's `occurredAt` is its row's new
 * `updated_at`, which strictly increases per user and product, so consumers can order them.
 */
export class Products extends Effect.Service<Products>()("@kpipe/commerce-service/Products", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient
    const topics = yield* Topics.resolve

    const exists = (productId: Ids.ProductId) =>
      Effect.flatMap(
        sql`SELECT 1 FROM products WHERE product_id = ${productId}`,
        (rows) =>
          rows.length > 0
            ? Effect.void
            : Effect.fail(new ProductNotFound({ productId, message: `Product ${productId} does not exist.` }))
      )

    const create = Effect.fn("Products.create")(function*(request: CreateProductRequest) {
      const createdAt = DateTime.toDateUtc(yield* DateTime.now)
      const rows = yield* sql`
        INSERT INTO products ${sql.insert({ name: request.name, price: BigDecimal.format(request.price), createdAt })}
        RETURNING *`
      return new Product(yield* decodeProduct(rows[0]))
    })

    const get = Effect.fn("Products.get")(function*(productId: Ids.ProductId) {
      const rows = yield* sql`SELECT * FROM products WHERE product_id = ${productId}`
      if (rows.length === 0) {
        return yield* new ProductNotFound({ productId, message: `Product ${productId} does not exist.` })
      }
      return new Product(yield* decodeProduct(rows[0]))
    })

    const list = Effect.fn("Products.list")(function*(page: Page) {
      const limit = page.limit ?? 100
      const rows = yield* decodeProducts(
        yield* sql`SELECT * FROM products WHERE product_id > ${page.after ?? 0} ORDER BY product_id LIMIT ${limit + 1}`
      )
      const { items, next } = paged(rows, limit)
      return new ProductPage({
        products: items.map((row) => new Product(row)),
        ...Option.match(next, {
          onNone: () => ({}),
          onSome: (next) => ({ next })
        })
      })
    })

    const setLike = (productId: Ids.ProductId, userId: Ids.UserId, liked: boolean) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* exists(productId)
        const now = DateTime.toDateUtc(yield* DateTime.now)
        // The row lock of the upsert serializes one user's likes of one product; its WHERE sees the latest row.
        const changed = liked
          ? yield* sql`
              INSERT INTO likes AS l (product_id, user_id, liked, updated_at)
              VALUES (${productId}, ${userId}, TRUE, ${now})
              ON CONFLICT (product_id, user_id) DO UPDATE
                SET liked = TRUE, updated_at = GREATEST(EXCLUDED.updated_at, l.updated_at + interval '1 millisecond')
                WHERE NOT l.liked
              RETURNING updated_at AS at`
          : yield* sql`
              UPDATE likes SET liked = FALSE, updated_at = GREATEST(${now}, updated_at + interval '1 millisecond')
              WHERE product_id = ${productId} AND user_id = ${userId} AND liked
              RETURNING updated_at AS at`
        if (changed.length > 0) {
          const { at } = yield* decodeTime(changed[0])
          const fields = { eventId: newEventId(), productId, userId, occurredAt: at }
          yield* Outbox.append(
            topics.catalog,
            liked ? new ProductMetricsEvents.LikeAdded(fields) : new ProductMetricsEvents.LikeRemoved(fields)
          )
        }
        return new LikeState({ productId, userId, liked, changed: changed.length > 0 })
      }))

    const like = Effect.fn("Products.like")(function*(productId: Ids.ProductId, userId: Ids.UserId) {
      yield* Effect.annotateCurrentSpan({ "product.id": productId, "user.id": userId })
      return yield* setLike(productId, userId, true)
    })

    const unlike = Effect.fn("Products.unlike")(function*(productId: Ids.ProductId, userId: Ids.UserId) {
      yield* Effect.annotateCurrentSpan({ "product.id": productId, "user.id": userId })
      return yield* setLike(productId, userId, false)
    })

    const view = Effect.fn("Products.view")(function*(productId: Ids.ProductId, userId: Option.Option<Ids.UserId>) {
      return yield* sql.withTransaction(Effect.gen(function*() {
        yield* exists(productId)
        const viewedAt = yield* DateTime.now
        const eventId = newEventId()
        yield* sql`INSERT INTO product_views ${
          sql.insert({
            eventId,
            productId,
            userId: Option.getOrNull(userId),
            viewedAt: DateTime.toDateUtc(viewedAt)
          })
        }`
        yield* Outbox.append(
          topics.catalog,
          new ProductMetricsEvents.ProductViewed({
            eventId,
            productId,
            occurredAt: viewedAt,
            ...Option.match(userId, { onNone: () => ({}), onSome: (userId) => ({ userId }) })
          })
        )
        return new ViewRecorded({ productId, eventId, viewedAt })
      }))
    })

    /** Per product, what the tables say (one statement, so one snapshot per page). */
    const totals = Effect.fn("Products.totals")(function*(page: Page) {
      const limit = page.limit ?? 1000
      const rows = yield* decodeTotals(
        yield* sql`
          -- Counts stay BIGINT (text to the rows, in the days' JSON too): an ::int cast fails past 2^31.
          SELECT p.product_id,
            (SELECT count(*) FROM likes l WHERE l.product_id = p.product_id AND l.liked) AS likes,
            (SELECT count(*) FROM product_views v WHERE v.product_id = p.product_id) AS views,
            s.sales_count, s.sales_amount, s.cancellations, d.days
          FROM products p
          CROSS JOIN LATERAL (
            SELECT
              COALESCE(sum(i.quantity) FILTER (WHERE o.status <> 'CANCELLED'), 0) AS sales_count,
              COALESCE(sum(i.amount) FILTER (WHERE o.status <> 'CANCELLED'), 0)::text AS sales_amount,
              count(*) FILTER (WHERE o.status = 'CANCELLED') AS cancellations
            FROM order_items i JOIN orders o ON o.order_id = i.order_id
            WHERE i.product_id = p.product_id
          ) s
          CROSS JOIN LATERAL (
            SELECT COALESCE(json_agg(json_build_object(
              'day', g.day::text, 'likes', g.likes::text, 'views', g.views::text, 'salesCount', g.sales_count::text,
              'salesAmount', g.sales_amount::text, 'cancellations', g.cancellations::text
            ) ORDER BY g.day), '[]') AS days
            FROM (
            SELECT f.day, sum(f.likes) AS likes, sum(f.views) AS views,
              sum(f.sales_count) AS sales_count, sum(f.sales_amount) AS sales_amount,
              sum(f.cancellations) AS cancellations
            FROM (
              SELECT (l.updated_at AT TIME ZONE 'UTC')::date AS day, 1 AS likes, 0 AS views, 0 AS sales_count,
                0::numeric AS sales_amount, 0 AS cancellations
              FROM likes l WHERE l.product_id = p.product_id AND l.liked
              UNION ALL
              SELECT (v.viewed_at AT TIME ZONE 'UTC')::date, 0, 1, 0, 0, 0
              FROM product_views v WHERE v.product_id = p.product_id
              UNION ALL
              SELECT (o.created_at AT TIME ZONE 'UTC')::date, 0, 0, i.quantity, i.amount, 0
              FROM order_items i JOIN orders o ON o.order_id = i.order_id
              WHERE i.product_id = p.product_id AND o.status <> 'CANCELLED'
              UNION ALL
              -- A cancelled order changes no more: its updated_at is when it was cancelled.
              SELECT (o.updated_at AT TIME ZONE 'UTC')::date, 0, 0, 0, 0, 1
              FROM order_items i JOIN orders o ON o.order_id = i.order_id
              WHERE i.product_id = p.product_id AND o.status = 'CANCELLED'
            ) f
            GROUP BY f.day
            ) g
          ) d
          WHERE p.product_id > ${page.after ?? 0}
          ORDER BY p.product_id
          LIMIT ${limit + 1}`
      )
      const { items, next } = paged(rows, limit)
      return new TotalsPage({
        totals: items.map((row) => new ProductTotals({ ...row, days: row.days.map((day) => new DayTotals(day)) })),
        ...Option.match(next, { onNone: () => ({}), onSome: (next) => ({ next }) })
      })
    })

    return { create, get, list, like, unlike, view, totals } as const
  })
}) {}
