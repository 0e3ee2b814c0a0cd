import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

/** account-service's own tables, with their own history table. */
export const account: Migrations.MigrationsOptions = {
  table: "account_migrations",
  loader: Migrator.fromRecord({
    "0001_account_login_stats": Effect.flatMap(SqlClient, (sql) =>
      sql`
        CREATE TABLE account_login_stats (
          account_id BIGINT PRIMARY KEY,
          login_count BIGINT NOT NULL CHECK (login_count > 0),
          last_login_at TIMESTAMPTZ NOT NULL,
          last_session_id TEXT NOT NULL,
          updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )`)
  })
}

/** Everything account-service needs, in order: the consumer's tables, then its own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, account]
