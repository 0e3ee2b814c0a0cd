import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { App, Config, Http, Migrations } from "@kpipe/commerce-service"
import { CommerceApi } from "@kpipe/contracts/CommerceApi"
import { Database } from "@kpipe/sql"
import { TestLogging } from "@kpipe/testing"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

export const adminToken = "test-admin-token"

export const testConfig = Config.layer({
  port: 0,
  replica: 0,
  adminToken: Redacted.make(adminToken),
  relayBatchSize: 1000,
  relayConcurrency: 1,
  relayPollInterval: Duration.seconds(1),
  outboxRetention: Duration.zero
})

/** commerce-service's API in process on a fresh database of its own (no relay: events stay in the outbox). */
export const TestLive = HttpApiBuilder.serve().pipe(
  Layer.provide(Http.layer),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(testConfig),
  Layer.provideMerge(App.domain),
  Layer.provideMerge(Database.layerTest(Migrations.all)),
  Layer.provideMerge(TestLogging.layer)
)

/** The typed client, as user `userId` (`X-User-Id`), or anonymous. */
export const client = (userId?: number) =>
  HttpApiClient.make(CommerceApi, {
    transformClient: userId === undefined
      ? undefined
      : HttpClient.mapRequest(HttpClientRequest.setHeader("x-user-id", String(userId)))
  })

/** The typed client with the admin token (`Authorization: Bearer`): the `admin` group's endpoints. */
export const adminClient = () =>
  HttpApiClient.make(CommerceApi, {
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(adminToken))
  })

export interface OutboxRow {
  readonly topic: string
  readonly messageKey: string
  readonly eventType: string
  readonly payload: Record<string, unknown>
}

export const outboxRows = Effect.flatMap(
  SqlClient,
  (sql) => sql<OutboxRow>`SELECT topic, message_key, event_type, payload FROM kpipe_outbox ORDER BY id`
)
