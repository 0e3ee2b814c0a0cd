import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

const createCatalog = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE products (
      product_id BIGSERIAL PRIMARY KEY,
      name TEXT NOT NULL,
      price NUMERIC NOT NULL CHECK (price >= 0),
      created_at TIMESTAMPTZ NOT NULL
    )`
  // A like stays as a row when taken back, so that its updated_at keeps increasing per user and product:
  // the events' occurredAt orders them for the consumers.
  yield* sql`
    CREATE TABLE likes (
      product_id BIGINT NOT NULL REFERENCES products (product_id),
      user_id BIGINT NOT NULL,
      liked BOOLEAN NOT NULL,
      updated_at TIMESTAMPTZ NOT NULL,
      PRIMARY KEY (product_id, user_id)
    )`
  yield* sql`CREATE INDEX likes_standing ON likes (product_id) WHERE liked`
  yield* sql`
    CREATE TABLE product_views (
      event_id UUID PRIMARY KEY,
      product_id BIGINT NOT NULL REFERENCES products (product_id),
      user_id BIGINT,
      viewed_at TIMESTAMPTZ NOT NULL
    )`
  yield* sql`CREATE INDEX product_views_product ON product_views (product_id)`
})

const createOrders = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE orders (
      order_id BIGSERIAL PRIMARY KEY,
      user_id BIGINT NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('CREATED', 'PAID', 'CANCELLED')),
      total NUMERIC NOT NULL,
      created_at TIMESTAMPTZ NOT NULL,
      updated_at TIMESTAMPTZ NOT NULL
    )`
  yield* sql`
    CREATE TABLE order_items (
      order_id BIGINT NOT NULL REFERENCES orders (order_id),
      line INT NOT NULL,
      product_id BIGINT NOT NULL REFERENCES products (product_id),
      quantity INT NOT NULL CHECK (quantity > 0),
      amount NUMERIC NOT NULL CHECK (amount >= 0),
      PRIMARY KEY (order_id, line),
      UNIQUE (order_id, product_id)
    )`
  yield* sql`CREATE INDEX order_items_product ON order_items (product_id)`
})

// A key is the client's, per user: two users may pick the same one. Orders without a key (NULL) never
// conflict. `Orders.create` inserts with ON CONFLICT (user_id, idempotency_key) DO NOTHING.
const orderIdempotencyKeys = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`ALTER TABLE orders ADD COLUMN idempotency_key TEXT`
  yield* sql`ALTER TABLE orders ADD CONSTRAINT orders_user_idempotency_key UNIQUE (user_id, idempotency_key)`
})

/** commerce-service's own tables, with their own history table. */
export const migrations: Migrations.MigrationsOptions = {
  table: "commerce_migrations",
  loader: Migrator.fromRecord({
    "0001_catalog": createCatalog,
    "0002_orders": createOrders,
    "0003_order_idempotency_keys": orderIdempotencyKeys
  })
}

/** Everything commerce-service's database needs, in order: the outbox tables, then its own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, migrations]
