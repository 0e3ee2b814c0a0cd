import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

const createTables = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE coupons (
      id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      name TEXT NOT NULL,
      total_quantity INTEGER NOT NULL CHECK (total_quantity > 0),
      issued_quantity INTEGER NOT NULL DEFAULT 0,
      valid_from TIMESTAMPTZ NOT NULL,
      valid_until TIMESTAMPTZ NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      CHECK (valid_until > valid_from),
      CHECK (issued_quantity >= 0 AND issued_quantity <= total_quantity)
    )`
  // UNIQUE (coupon_id, user_id) is the last line against a double issue, whatever Redis says.
  yield* sql`
    CREATE TABLE user_coupons (
      id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      coupon_id INTEGER NOT NULL REFERENCES coupons (id),
      user_id BIGINT NOT NULL CHECK (user_id > 0),
      event_id UUID NOT NULL UNIQUE,
      status TEXT NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'USED', 'EXPIRED')),
      issued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      UNIQUE (coupon_id, user_id)
    )`
  yield* sql`CREATE INDEX user_coupons_by_user ON user_coupons (user_id, issued_at DESC)`
  // Requests that ended FAILED: the status query falls back to it when Redis has forgotten.
  yield* sql`
    CREATE TABLE coupon_issue_failures (
      event_id UUID PRIMARY KEY,
      coupon_id INTEGER NOT NULL,
      user_id BIGINT NOT NULL,
      reason TEXT NOT NULL CHECK (reason IN ('SOLD_OUT', 'DEAD_LETTERED')),
      detail TEXT,
      failed_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX coupon_issue_failures_by_user ON coupon_issue_failures (coupon_id, user_id, failed_at DESC)`
})

// NOT_QUEUED: a reservation the reclaimer released because its request never reached Kafka.
const notQueued = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    ALTER TABLE coupon_issue_failures
      DROP CONSTRAINT coupon_issue_failures_reason_check,
      ADD CONSTRAINT coupon_issue_failures_reason_check CHECK (reason IN ('SOLD_OUT', 'DEAD_LETTERED', 'NOT_QUEUED'))`
})

/** coupon-service's own tables, with their own history table. */
export const coupons: Migrations.MigrationsOptions = {
  table: "coupon_service_migrations",
  loader: Migrator.fromRecord({ "0001_coupons": createTables, "0002_not_queued": notQueued })
}

/** Everything coupon-service needs, in order: the consumer's tables, then its own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, coupons]
