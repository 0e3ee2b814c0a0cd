import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, layer } from "@effect/vitest"
import { Config, Http, LoginStats, Migrations } from "@kpipe/account-service"
import { AccountApi } from "@kpipe/contracts"
import { Ids } from "@kpipe/events"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, RawHttp, TestLogging } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { login } from "./utils.ts"

const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(Http.layer),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provide(Config.layerFromEnv),
  Layer.provideMerge(LoginStats.LoginStats.Default),
  Layer.provideMerge(Database.layerTest(Migrations.all)),
  Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["REPLICA", "2"]])))),
  Layer.provideMerge(TestLogging.layer)
)

/** The API as the gateway calls it: `X-User-Id` is the account the path names. */
const gatewayClient = HttpApiClient.make(AccountApi.AccountApi, {
  transformClient: HttpClient.mapRequest((request) => {
    const accountId = /\/api\/accounts\/(\d+)/.exec(request.url)?.[1]
    return accountId === undefined ? request : HttpClientRequest.setHeader(request, "x-user-id", accountId)
  })
})

layer(ServerLive, { timeout: "60 seconds", excludeTestServices: true })("AccountApi", (it) => {
  it.effect("serves an account's login statistics, a typed 404 and the replica's health", () =>
    Effect.gen(function*() {
      const stats = yield* LoginStats.LoginStats
      const first = login("api-", 5, 1, Date.UTC(2030, 0, 1))
      const second = login("api-", 5, 2, Date.UTC(2030, 0, 2))
      // Arrival order does not matter: the latest login is the last one.
      yield* stats.record(second)
      yield* stats.record(first)
      const client = yield* gatewayClient

      const found = yield* client.accounts.getLogins({ path: { accountId: Ids.AccountId.make(5) } })
      assert.strictEqual(found.loginCount, 2)
      assert.strictEqual(found.lastSessionId, second.sessionId)
      assert.isTrue(DateTime.Equivalence(found.lastLoginAt, second.occurredAt))

      const missing = yield* client.accounts.getLogins({ path: { accountId: Ids.AccountId.make(6) } }).pipe(
        Effect.flip
      )
      assert.deepStrictEqual(missing, new AccountApi.AccountNotFound({ accountId: Ids.AccountId.make(6) }))

      assert.deepStrictEqual(
        yield* client.health.health(),
        new AccountApi.Health({ status: "ok", service: "account-service", replica: 2 })
      )
    }))

  it.effect("answers an account's statistics to its own user only: 401 without X-User-Id, 403 for another", () =>
    Effect.gen(function*() {
      for (
        const [headers, status, tag] of [
          [undefined, 401, "MissingUserId"],
          [{ "x-user-id": "6" }, 403, "Forbidden"]
        ] as const
      ) {
        const answer = yield* RawHttp.request("GET", "/api/accounts/5/logins", undefined, headers)
        assert.deepStrictEqual([answer.status, answer.tag], [status, tag])
      }
    }))

  it.effect("rejects a malformed account id with 400", () =>
    Effect.gen(function*() {
      const http = yield* HttpClient.HttpClient
      for (const path of ["/api/accounts/abc/logins", "/api/accounts/0/logins", "/api/accounts/1.5/logins"]) {
        const response = yield* http.get(path, { headers: { "x-user-id": "1" } })
        assert.strictEqual(response.status, 400, path)
        const body = (yield* response.json) as { _tag: string }
        assert.strictEqual(body._tag, "HttpApiDecodeError")
      }
    }))

  it.effect(
    "without its database: answers 503 ServiceUnavailable, not 500, and stays healthy",
    () =>
      Effect.gen(function*() {
        const client = yield* gatewayClient
        yield* DatabaseFaults.cutOff

        const logins = yield* client.accounts.getLogins({ path: { accountId: Ids.AccountId.make(1) } }).pipe(
          Effect.flip
        )
        assert.strictEqual(logins._tag, "ServiceUnavailable")
        const raw = yield* RawHttp.request("GET", "/api/accounts/1/logins", undefined, { "x-user-id": "1" })
        assert.strictEqual(raw.status, 503)
        assert.strictEqual(raw.tag, "ServiceUnavailable")
        assert.strictEqual((yield* client.health.health()).status, "ok")
        // Its own database: the file's tests run concurrently, and a cut-off shared one fails them.
      }).pipe(Effect.provide(ServerLive)),
    { timeout: 30_000 }
  )
})
