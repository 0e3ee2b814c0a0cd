import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

/** d-day-service's own tables, with their own history table. */
export const dday: Migrations.MigrationsOptions = {
  table: "dday_migrations",
  loader: Migrator.fromRecord({
    "0001_member_references": Effect.flatMap(SqlClient, (sql) =>
      sql`
        CREATE TABLE member_references (
          member_id BIGINT PRIMARY KEY,
          nickname TEXT NOT NULL,
          email TEXT,
          status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'DELETED')),
          source_updated_at TIMESTAMPTZ NOT NULL,
          synced_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )`),
    "0002_ddays": Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`
        CREATE TABLE ddays (
          id BIGSERIAL PRIMARY KEY,
          member_id BIGINT NOT NULL REFERENCES member_references (member_id),
          title TEXT NOT NULL,
          target_date DATE NOT NULL,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )`
      yield* sql`CREATE INDEX ddays_member ON ddays (member_id, target_date)`
    })
  })
}

/** Everything d-day-service needs, in order: the consumer's tables, then its own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, dday]
