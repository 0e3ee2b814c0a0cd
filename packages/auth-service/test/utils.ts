import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { AuthApi, SignInRequest } from "@kpipe/contracts/AuthApi"
import { Database } from "@kpipe/sql"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "../src/Http.ts"
import { Members } from "../src/Members.ts"
import * as AuthMigrations from "../src/Migrations.ts"

/**
 * auth-service served in process on a fresh database of its own (dropped afterwards), with a
 * client pointed at it: each test sees only its own rows.
 */
export const AppTest = HttpApiBuilder.serve().pipe(
  Layer.provide(Http.layer),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(Members.Default),
  Layer.provideMerge(Database.layerTest(AuthMigrations.all)),
  Layer.provideMerge(TestLogging.layer)
)

export const client = HttpApiClient.make(AuthApi)

export const signInRequest = (subject: string, fields: Partial<{ nickname: string; email: string }> = {}) =>
  new SignInRequest({ provider: "google", subject, nickname: fields.nickname ?? "Alice", ...fields })

export interface OutboxRow {
  readonly topic: string
  readonly messageKey: string
  readonly eventId: string
  readonly eventType: string
  readonly payload: Record<string, unknown>
}

export const outboxRows = Effect.flatMap(
  SqlClient,
  (sql) => sql<OutboxRow>`SELECT topic, message_key, event_id, event_type, payload FROM kpipe_outbox ORDER BY id`
)

/** Rows in every table a request could write to. */
export const writes = Effect.flatMap(SqlClient, (sql) =>
  sql<{ outbox: number; members: number; sessions: number }>`
    SELECT (SELECT count(*)::int FROM kpipe_outbox) AS outbox,
           (SELECT count(*)::int FROM members) AS members,
           (SELECT count(*)::int FROM sessions) AS sessions`).pipe(Effect.map((rows) => rows[0]!))
