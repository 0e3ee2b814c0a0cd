import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { App, Http, Migrations } from "@kpipe/commerce-service"
import { CommerceApi } from "@kpipe/contracts/CommerceApi"
import { Database } from "@kpipe/sql"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** commerce-service's API in process on a fresh database of its own (no relay: events stay in the outbox). */
export const TestLive = HttpApiBuilder.serve().pipe(
  Layer.provide(Http.layer),
  Layer.provideMerge(NodeHttpServer.layerTest),
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
