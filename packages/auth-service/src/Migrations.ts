import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { PipelineMigrations } from "@kpipe/pipeline"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

const createMembers = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE members (
      member_id BIGSERIAL PRIMARY KEY,
      provider TEXT NOT NULL,
      subject TEXT NOT NULL,
      nickname TEXT NOT NULL,
      email TEXT,
      status TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DELETED')),
      created_at TIMESTAMPTZ NOT NULL,
      updated_at TIMESTAMPTZ NOT NULL,
      deleted_at TIMESTAMPTZ,
      CHECK ((status = 'DELETED') = (deleted_at IS NOT NULL))
    )`
  // Only one ACTIVE member per provider subject: a deleted account's subject signs up afresh.
  yield* sql`CREATE UNIQUE INDEX members_active_subject ON members (provider, subject) WHERE status = 'ACTIVE'`
})

const createSessions = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE sessions (
      session_id TEXT PRIMARY KEY,
      member_id BIGINT NOT NULL REFERENCES members (member_id),
      created_at TIMESTAMPTZ NOT NULL
    )`
  yield* sql`CREATE INDEX sessions_member ON sessions (member_id)`
})

const createMemberTokens = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE member_tokens (
      token_hash BYTEA PRIMARY KEY,
      member_id BIGINT NOT NULL REFERENCES members (member_id),
      created_at TIMESTAMPTZ NOT NULL,
      expires_at TIMESTAMPTZ NOT NULL
    )`
  yield* sql`CREATE INDEX member_tokens_member ON member_tokens (member_id)`
})

/** auth-service's own tables, with their own history table. */
export const migrations: Migrations.MigrationsOptions = {
  table: "auth_migrations",
  loader: Migrator.fromRecord({
    "0001_members": createMembers,
    "0002_sessions": createSessions,
    "0003_member_tokens": createMemberTokens
  })
}

/** Everything auth-service's database needs, in order: the outbox tables, then its own. */
export const all: ReadonlyArray<Migrations.MigrationsOptions> = [PipelineMigrations.migrations, migrations]
