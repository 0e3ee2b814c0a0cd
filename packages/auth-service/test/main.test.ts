import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, it } from "@effect/vitest"
import { AuthApi, SignInRequest } from "@kpipe/contracts/AuthApi"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"

const mainScript = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("main.ts", () => {
  it.live(
    "creates its database, serves the API with /docs and /openapi.json, and exits 0 on SIGTERM",
    () =>
      Effect.gen(function*() {
        const serverUrl = yield* Database.url
        const database = `kpipe_auth_main_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`
        const databaseUrl = Database.withDatabase(Redacted.value(serverUrl), database)
        yield* Effect.addFinalizer(() =>
          Database.onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(database)} WITH (FORCE)`).pipe(
            Effect.ignoreLogged
          )
        )
        const child = yield* ServiceProcess.start({
          name: "auth-service",
          entry: mainScript,
          env: { DATABASE_URL: databaseUrl, PORT: "0", TOPIC_PREFIX: `${TestKafka.uniqueName("auth-main")}.` },
          readyTimeout: "30 seconds",
          stopTimeout: "15 seconds"
        })
        const output = child.output
        const port = child.port
        assert.isDefined(port, output())
        const baseUrl = `http://127.0.0.1:${port}`

        const api = yield* HttpApiClient.make(AuthApi, { baseUrl })
        const { created, member, session } = yield* api.members.signIn({
          payload: new SignInRequest({ provider: "github", subject: "octocat", nickname: "Octo" })
        })
        assert.isTrue(created)
        const refused = yield* api.members.login({ path: { memberId: member.memberId } }).pipe(Effect.flip)
        assert.strictEqual(refused._tag, "Unauthenticated")
        const own = yield* HttpApiClient.make(AuthApi, {
          baseUrl,
          transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(Redacted.value(session.token)))
        })
        assert.strictEqual(
          (yield* own.members.login({ path: { memberId: member.memberId } })).memberId,
          member.memberId
        )
        assert.notInclude(output(), Redacted.value(session.token))

        const http = yield* HttpClient.HttpClient
        const docs = yield* http.get(`${baseUrl}/docs`)
        assert.strictEqual(docs.status, 200)
        assert.include(yield* docs.text, "swagger")
        const openApi = (yield* (yield* http.get(`${baseUrl}/openapi.json`)).json) as { paths: Record<string, unknown> }
        assert.deepStrictEqual(Object.keys(openApi.paths).sort(), [
          "/api/auth/sign-in",
          "/api/members/{memberId}",
          "/api/members/{memberId}/login"
        ])

        const code = yield* child.stop
        assert.strictEqual(code, 0, output())
        assert.notMatch(output(), /ERROR|Fiber terminated|defect/i, output())
      }).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped),
    { timeout: 60_000 }
  )
})
