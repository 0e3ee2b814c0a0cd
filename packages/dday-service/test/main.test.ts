import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { closedUrl } from "./utils.ts"

const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("main.ts", () => {
  it.live(
    "creates its database and topics, logs `d-day-service ready`, serves the API and docs, stops on SIGTERM",
    () =>
      Effect.gen(function*() {
        const serverUrl = yield* Database.url
        const database = `kpipe_test_dday_main_${Date.now().toString(36)}`
        yield* Effect.addFinalizer(() =>
          Database.onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(database)} WITH (FORCE)`).pipe(
            Effect.ignoreLogged
          )
        )
        const port = yield* freePort
        const service = yield* ServiceProcess.start({
          name: "d-day-service",
          entry: fileURLToPath(new URL("../src/main.ts", import.meta.url)),
          env: {
            DATABASE_URL: Database.withDatabase(Redacted.value(serverUrl), database),
            TOPIC_PREFIX: `${TestKafka.uniqueName("dday-main")}.`,
            PORT: String(port),
            AUTH_SERVICE_URL: closedUrl
          }
        })
        assert.include(service.output(), `Listening on http://127.0.0.1:${port}`)

        const get = (path: string) =>
          Effect.tryPromise(async () => {
            const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { "x-user-id": "1" } })
            return { status: response.status, text: await response.text() }
          })
        const openApi = yield* get("/openapi.json")
        assert.strictEqual(openApi.status, 200)
        assert.strictEqual(JSON.parse(openApi.text).info.title, "d-day-service")
        assert.strictEqual((yield* get("/docs")).status, 200)
        const missing = yield* get("/api/members/1")
        assert.deepStrictEqual([missing.status, JSON.parse(missing.text)], [404, {
          memberId: 1,
          _tag: "MemberNotFound"
        }])

        assert.strictEqual(yield* service.stop, 0)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )
})
