import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { AuthApi, SignInRequest } from "@kpipe/contracts/AuthApi"
import { Database } from "@kpipe/sql"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Config from "../src/Config.ts"
import * as Http from "../src/Http.ts"
import { Members } from "../src/Members.ts"
import * as AuthMigrations from "../src/Migrations.ts"
import { SessionTokens } from "../src/SessionTokens.ts"

/**
 * auth-service served in process on a fresh database of its own (dropped afterwards), with a
 * client pointed at it: each test sees only its own rows.
 */
export const TestLive = HttpApiBuilder.serve().pipe(
  Layer.provide(Http.layer),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(Layer.merge(Members.Default, SessionTokens.Default)),
  Layer.provideMerge(Config.layerFromEnv),
  Layer.provideMerge(Database.layerTest(AuthMigrations.all)),
  Layer.provideMerge(TestLogging.layer)
)

/**
 * The typed client, keeping the session token of each member's last sign-in and sending it on
 * requests about that member, as a member's own browser would.
 */
export const client = Effect.gen(function*() {
  const tokens = new Map<number, string>()
  const api = yield* HttpApiClient.make(AuthApi, {
    transformClient: HttpClient.mapRequest((request) => {
      const memberId = /\/api\/members\/(\d+)/.exec(request.url)?.[1]
      const token = memberId === undefined ? undefined : tokens.get(Number(memberId))
      return token === undefined ? request : HttpClientRequest.bearerToken(request, token)
    })
  })
  const signIn = (request: { readonly payload: SignInRequest }) =>
    api.members.signIn(request).pipe(
      Effect.tap((response) => tokens.set(response.member.memberId, Redacted.value(response.session.token)))
    )
  return {
    members: { ...api.members, signIn },
    /** The session token of `memberId`'s last sign-in. */
    tokenOf: (memberId: number) => tokens.get(memberId) ?? ""
  }
})

/** `Authorization` for RawHttp requests. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

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
