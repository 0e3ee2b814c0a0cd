import { assert, describe, it } from "@effect/vitest"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { spawn } from "node:child_process"
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
        const output: Array<string> = []
        const ready = yield* Deferred.make<void>()
        const exited = yield* Deferred.make<number | null>()
        const child = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const child = spawn(process.execPath, [fileURLToPath(new URL("../src/main.ts", import.meta.url))], {
              env: {
                ...process.env,
                DATABASE_URL: Database.withDatabase(Redacted.value(serverUrl), database),
                TOPIC_PREFIX: `${TestKafka.uniqueName("dday-main")}.`,
                PORT: String(port),
                AUTH_SERVICE_URL: closedUrl
              },
              stdio: ["ignore", "pipe", "pipe"]
            })
            const collect = (chunk: Buffer) => {
              output.push(chunk.toString())
              if (output.join("").includes("d-day-service ready")) Deferred.unsafeDone(ready, Effect.void)
            }
            child.stdout.on("data", collect)
            child.stderr.on("data", collect)
            child.on("exit", (code) => Deferred.unsafeDone(exited, Effect.succeed(code)))
            return child
          }),
          (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
        )
        yield* Effect.raceFirst(
          Deferred.await(ready),
          Effect.flatMap(Deferred.await(exited), (code) => Effect.dieMessage(`exited ${code}: ${output.join("")}`))
        ).pipe(Effect.timeout("60 seconds"))
        assert.include(output.join(""), `Listening on http://127.0.0.1:${port}`)

        const get = (path: string) =>
          Effect.tryPromise(async () => {
            const response = await fetch(`http://127.0.0.1:${port}${path}`)
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

        child.kill("SIGTERM")
        assert.strictEqual(yield* Deferred.await(exited).pipe(Effect.timeout("30 seconds")), 0)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )
})
