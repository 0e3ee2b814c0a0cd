import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

const createCatalog = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE products (
      product_id BIGINT PRIMARY KEY,
      name TEXT NOT NULL,
      price NUMERIC(14, 2) NOT NULL CHECK (price >= 0)
    )`
  // The inventory's own table: stock can never go below zero, whatever the race.
  yield* sql`
    CREATE TABLE inventory (
      product_id BIGINT PRIMARY KEY,
      stock INT NOT NULL CHECK (stock >= 0)
    )`
  yield* sql`
    CREATE TABLE inventory_reservations (
      order_id BIGINT PRIMARY KEY,
      product_id BIGINT NOT NULL,
      quantity INT NOT NULL CHECK (quantity > 0),
      reserved_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`
  yield* sql`
    INSERT INTO products (product_id, name, price) VALUES
      (1, 'Mechanical keyboard', 89.90),
      (2, 'Wireless mouse', 24.50),
      (3, 'Limited edition print', 120.00),
      (4, 'Sticker', 1.99)`
  yield* sql`INSERT INTO inventory (product_id, stock) VALUES (1, 100), (2, 250), (3, 3), (4, 1000000)`
})

const createOrders = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE orders (
      order_id BIGSERIAL PRIMARY KEY,
      user_id BIGINT NOT NULL,
      product_id BIGINT NOT NULL REFERENCES products (product_id),
      quantity INT NOT NULL CHECK (quantity > 0),
      unit_price NUMERIC(14, 2) NOT NULL,
      amount NUMERIC(16, 2) NOT NULL,
      status TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED', 'NEEDS_ATTENTION')),
      reason TEXT,
      idempotency_key TEXT,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      UNIQUE (user_id, idempotency_key)
    )`
  yield* sql`CREATE INDEX orders_by_user ON orders (user_id, order_id DESC)`
  yield* sql`
    CREATE TABLE notification_deliveries (
      event_id TEXT NOT NULL,
      channel TEXT NOT NULL CHECK (channel IN ('EMAIL', 'SMS')),
      order_id BIGINT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('CONFIRMATION', 'CANCELLATION')),
      state TEXT NOT NULL CHECK (state IN ('SENT', 'FAILED')),
      attempts INT NOT NULL,
      last_error TEXT,
      updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      PRIMARY KEY (event_id, channel)
    )`
  yield* sql`CREATE INDEX notification_deliveries_by_order ON notification_deliveries (order_id, channel)`
})

export const migrations: Migrations.MigrationsOptions = {
  table: "order_service_migrations",
  loader: Migrator.fromRecord({
    "0001_catalog": createCatalog,
    "0002_orders": createOrders
  })
}

/** The pipeline's tables (outbox, claims, failed events), then the service's own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, migrations]
