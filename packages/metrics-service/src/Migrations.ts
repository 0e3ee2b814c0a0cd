import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

const createFacts = Effect.gen(function*() {
  const sql = yield* SqlClient
  // prev_*: the values an upsert replaced, so that its RETURNING gives the change exactly, whatever
  // another transaction did to the row before (the SET reads the row version it locked).
  yield* sql`
    CREATE TABLE like_facts (
      product_id BIGINT NOT NULL,
      user_id BIGINT NOT NULL,
      liked BOOLEAN NOT NULL,
      at TIMESTAMPTZ NOT NULL,
      prev_liked BOOLEAN,
      prev_at TIMESTAMPTZ,
      PRIMARY KEY (product_id, user_id)
    )`
  yield* sql`
    CREATE TABLE order_facts (
      order_id BIGINT PRIMARY KEY,
      created_at TIMESTAMPTZ,
      items JSONB,
      cancelled_at TIMESTAMPTZ,
      cancel_items JSONB,
      paid_at TIMESTAMPTZ,
      prev_created_at TIMESTAMPTZ,
      prev_cancelled_at TIMESTAMPTZ
    )`
})

const createMetrics = Effect.gen(function*() {
  const sql = yield* SqlClient
  // No CHECK (>= 0) on the figures: PostgreSQL checks an upsert's proposed row, whose figures are the
  // deltas, before it finds the conflict. The figures are sums of contributions that were made.
  yield* sql`
    CREATE TABLE product_metrics (
      product_id BIGINT PRIMARY KEY,
      likes BIGINT NOT NULL DEFAULT 0,
      views BIGINT NOT NULL DEFAULT 0,
      sales_count BIGINT NOT NULL DEFAULT 0,
      sales_amount NUMERIC NOT NULL DEFAULT 0,
      cancellations BIGINT NOT NULL DEFAULT 0
    )`
  yield* sql`
    CREATE TABLE product_metric_buckets (
      period TEXT NOT NULL CHECK (period IN ('day', 'week')),
      starts DATE NOT NULL,
      product_id BIGINT NOT NULL,
      likes BIGINT NOT NULL DEFAULT 0,
      views BIGINT NOT NULL DEFAULT 0,
      sales_count BIGINT NOT NULL DEFAULT 0,
      sales_amount NUMERIC NOT NULL DEFAULT 0,
      cancellations BIGINT NOT NULL DEFAULT 0,
      PRIMARY KEY (period, starts, product_id)
    )`
  // The rankings' top-N: an index scan from the top of the window's slice, whatever the number of products.
  for (const column of ["likes", "views", "sales_count"]) {
    yield* sql`CREATE INDEX ${sql(`product_metric_buckets_${column}`)}
      ON product_metric_buckets (period, starts, ${sql(column)} DESC, product_id)`
  }
})

/**
 * The newest event time applied from each partition of each topic, written in the consumers'
 * transactions: a restarted service reports its freshness from its first second, so a consumer
 * stuck from the start still shows its age. Per partition, so partitions applied at once never
 * wait on one row.
 */
const createFreshness = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE metrics_freshness (
      topic TEXT NOT NULL,
      partition INT NOT NULL,
      newest_event_at TIMESTAMPTZ NOT NULL,
      PRIMARY KEY (topic, partition)
    )`
})

/** metrics-service's own tables, with their own history table. */
export const migrations: Migrations.MigrationsOptions = {
  table: "metrics_migrations",
  loader: Migrator.fromRecord({
    "0001_facts": createFacts,
    "0002_metrics": createMetrics,
    "0003_freshness": createFreshness
  })
}

/** Everything metrics-service's database needs: the consumer's claims and failed events, then its own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, migrations]
