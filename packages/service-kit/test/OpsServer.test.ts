import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { OpsApi } from "@kpipe/contracts"
import { Admin } from "@kpipe/kafka"
import { DeadLetter, PipelineMigrations } from "@kpipe/pipeline"
import { OpsServer } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, TestKafka, TestLogging } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { createServer } from "node:net"

const token = "s3cret-admin-token"

const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(OpsServer.layerConsole),
  Layer.provide(OpsServer.layerApi(Config.succeed(Redacted.make(token)))),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(TestKafka.layer),
  Layer.provideMerge(Database.layerTest([PipelineMigrations.migrations])),
  Layer.provideMerge(TestLogging.layer)
)

const client = (bearer: string) =>
  HttpApiClient.make(OpsApi.OpsApi, {
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(bearer))
  })

/** A failure as the dead-letter sink records it, of a record on `topic`. */
const recordFailure = (topic: string, offset: number) =>
  Effect.flatMap(SqlClient, (sql) => {
    const now = DateTime.unsafeNow()
    const eventId = crypto.randomUUID()
    const letter = new DeadLetter.DeadLetterHeaders({
      originalTopic: topic,
      originalPartition: 0,
      originalOffset: String(offset),
      originalTimestamp: String(Date.now()),
      originalKey: "k",
      consumerGroup: "billing",
      errorTag: "Rejected",
      errorMessage: "no such account",
      eventId,
      eventType: "AccountCharged",
      attempts: 4,
      firstAttemptAt: now,
      lastAttemptAt: now
    })
    const value = Buffer.from(JSON.stringify({ type: "AccountCharged", eventId }))
    return DeadLetter.recordFailure(sql, letter, {
      key: Buffer.from("k"),
      value,
      headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
    }, `${topic}.DLT`)
  })

/** These variables over the process's environment, for building one layer. */
const withEnv = (env: Record<string, string>) =>
  Layer.setConfigProvider(
    ConfigProvider.fromMap(new Map(Object.entries(env))).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
  )

const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolve(port))
    })
  })
)

const statusOf = (url: string, bearer: string) =>
  Effect.tryPromise(() => fetch(url, { headers: { authorization: `Bearer ${bearer}` } }).then((r) => r.status))

describe("OpsServer", () => {
  it.live(
    "a service serves it on OPS_PORT behind its ADMIN_TOKEN; without OPS_PORT not at all",
    () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const health = `http://127.0.0.1:${port}/ops/health`
        // Built as main.ts builds it: beside the service's own HttpApi server (with /docs too), in one layer.
        const ServiceApiLive = HttpApiBuilder.serve().pipe(
          Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
          Layer.provide(OpsServer.layerApi(Config.succeed(Redacted.make("the-service-api")))),
          Layer.provideMerge(NodeHttpServer.layerTest)
        )
        yield* Effect.gen(function*() {
          assert.strictEqual(yield* statusOf(health, token), 200)
          assert.strictEqual(yield* statusOf(health, "not-the-token"), 401)
          assert.strictEqual(yield* statusOf(`http://127.0.0.1:${port}/console`, ""), 200)
          assert.strictEqual(yield* statusOf(`http://127.0.0.1:${port}/docs`, ""), 200)
          const service = yield* HttpClient.get("/docs")
          assert.strictEqual(service.status, 200, "the service's own server answers too")
        }).pipe(Effect.provide(Layer.merge(
          ServiceApiLive,
          OpsServer.layerFromEnv.pipe(Layer.provide(withEnv({ OPS_PORT: String(port), ADMIN_TOKEN: token })))
        )))

        yield* Effect.gen(function*() {
          const refused = yield* Effect.either(statusOf(health, token))
          assert.strictEqual(refused._tag, "Left", "nothing listens without OPS_PORT")
        }).pipe(Effect.provide(OpsServer.layerFromEnv.pipe(Layer.provide(withEnv({ ADMIN_TOKEN: token })))))

        // Outside development mode a service with OPS_PORT and no ADMIN_TOKEN does not start.
        const noToken = yield* Effect.exit(Effect.scoped(Layer.build(OpsServer.layerFromEnv.pipe(
          Layer.provide(withEnv({ OPS_PORT: "0", KPIPE_ENV: "production", ADMIN_TOKEN: "" }))
        ))))
        assert.isTrue(Exit.isFailure(noToken))
        assert.include(String(Exit.isFailure(noToken) ? noToken.cause : ""), "ADMIN_TOKEN is required")
      }).pipe(Effect.provide(ServerLive)),
    { timeout: 60_000 }
  )

  it.live(
    "ids that are not row ids and limits over 1,000 are a typed 400; the database away is a typed 503",
    () =>
      Effect.gen(function*() {
        const answer = (method: "GET" | "POST", path: string, body?: unknown) =>
          HttpClient.execute(
            (method === "GET" ? HttpClientRequest.get(path) : HttpClientRequest.post(path)).pipe(
              HttpClientRequest.bearerToken(token),
              body === undefined ? (r) => r : HttpClientRequest.bodyUnsafeJson(body)
            )
          ).pipe(
            Effect.flatMap((response) =>
              Effect.map(response.json, (json) => [response.status, (json as { _tag?: string })._tag] as const)
            )
          )
        const bad: ReadonlyArray<readonly [method: "GET" | "POST", path: string, body?: unknown]> = [
          ["GET", "/ops/failures/abc"],
          ["GET", "/ops/failures/1.5"],
          ["GET", "/ops/failures/99999999999999999999"],
          ["GET", "/ops/operations/-1"],
          ["POST", "/ops/operations/abc/cancel"],
          ["GET", "/ops/failures?limit=1001"],
          ["GET", "/ops/failures?limit=0"],
          ["POST", "/ops/redrive", { dryRunId: "x" }],
          ["POST", "/ops/redrive/dry-run", { selection: { ids: ["x"] } }],
          ["POST", "/ops/outbox/retry", { ids: ["99999999999999999999"] }],
          ["GET", "/ops/failures?topic=a%00b"],
          ["POST", "/ops/park", { selection: { key: "k\u0000" }, reason: "x" }],
          ["POST", "/ops/park", { selection: {}, reason: "bad\u0000reason" }],
          ["POST", "/ops/outbox/skip", { ids: Array.from({ length: 1001 }, (_, i) => String(i + 1)) }]
        ]
        for (const [method, path, body] of bad) {
          assert.deepStrictEqual(yield* answer(method, path, body), [400, "HttpApiDecodeError"], `${method} ${path}`)
        }
        assert.deepStrictEqual(yield* answer("GET", "/ops/failures/123"), [404, "NotFound"])

        yield* DatabaseFaults.cutOff
        for (
          const [method, path, body] of [["GET", "/ops/failures"], ["GET", "/ops/failures/123"], ["POST", "/ops/park", {
            selection: {},
            reason: "x"
          }]] as const
        ) {
          assert.deepStrictEqual(yield* answer(method, path, body), [503, "ServiceUnavailable"], `${method} ${path}`)
        }
      }).pipe(Effect.provide(ServerLive)),
    { timeout: 60_000 }
  )

  it.live("refuses requests without the admin token", () =>
    Effect.gen(function*() {
      const wrong = yield* client("not-the-token")
      const error = yield* Effect.flip(wrong.ops.health())
      assert.strictEqual(error._tag, "Unauthorized")
    }).pipe(Effect.provide(ServerLive)), { timeout: 60_000 })

  it.live(
    "shows groups and a failure, dry-runs and redrives it, audited; serves the console",
    () =>
      Effect.gen(function*() {
        const topic = TestKafka.uniqueName("ops")
        yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics([{ name: topic, partitions: 1 }]))
        yield* recordFailure(topic, 7)
        yield* recordFailure(topic, 8)
        const ops = (yield* client(token)).ops

        const health = yield* ops.health()
        assert.strictEqual(health.openFailures, 2)
        const [group] = yield* ops.groups({ urlParams: { topic } })
        assert.deepInclude(group, {
          consumerGroup: "billing",
          errorTag: "Rejected",
          eventType: "AccountCharged",
          count: 2
        })
        const detail = yield* ops.failure({ path: { id: group!.sampleId } })
        assert.strictEqual(detail.traceId, "0af7651916cd43dd8448eb211c80319c")
        assert.strictEqual(detail.payload._tag, "Json")
        const missing = yield* Effect.flip(ops.failure({ path: { id: "999999" } }))
        assert.strictEqual(missing._tag, "NotFound")

        const dry = yield* ops.dryRun({
          payload: new OpsApi.DryRunRequest({ selection: new OpsApi.Selection({ topic }), actor: "ops-test" })
        })
        assert.strictEqual(dry.count, 2)
        const changed = yield* Effect.flip(
          ops.redrive({ payload: new OpsApi.RedriveRequest({ dryRunId: dry.dryRunId, expectedCount: 5 }) })
        )
        assert.strictEqual(changed._tag, "SelectionChanged")
        const started = yield* ops.redrive({
          payload: new OpsApi.RedriveRequest({ dryRunId: dry.dryRunId, actor: "ops-test", ratePerSecond: 10 })
        })
        const done = yield* ops.operation({ path: { id: started.operationId } }).pipe(
          Effect.filterOrFail(({ operation }) => operation.status !== "RUNNING"),
          Effect.retry(Schedule.spaced("100 millis")),
          Effect.timeout("20 seconds")
        )
        assert.strictEqual(done.operation.status, "SUCCEEDED")
        assert.strictEqual(done.operation.actor, "ops-test")
        assert.deepStrictEqual(done.events.map((e) => e.outcome), ["REDRIVEN", "REDRIVEN"])
        assert.strictEqual((yield* ops.health()).openFailures, 0)
        // Back on the original topic, in the original trace, without the dead-letter envelope.
        const records = yield* TestKafka.readTopic(topic, 2)
        assert.strictEqual(records.length, 2)
        for (const record of records) {
          assert.match(record.headers["traceparent"]!, /^00-0af7651916cd43dd8448eb211c80319c-/)
          assert.notStrictEqual(
            record.headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
          )
          assert.strictEqual(record.headers["kpipe-redrive-operation"], started.operationId)
          assert.isTrue(Object.keys(record.headers).every((name) => !name.startsWith("kpipe-dlt-")))
        }

        const page = yield* HttpClient.get("/console").pipe(Effect.flatMap((response) => response.text))
        assert.include(page, "<title>kpipe ops</title>")
        assert.notMatch(page, /<(script|link)[^>]+(src|href)=["']?https?:/)
      }).pipe(Effect.scoped, Effect.provide(ServerLive)),
    { timeout: 60_000 }
  )
})
