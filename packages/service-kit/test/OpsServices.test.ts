import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Producer } from "@kpipe/kafka"
import { OpsGateway } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { Eventually, ServiceProcess, TestKafka, TestLogging } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"

const token = "services-admin-token"

interface Group {
  readonly topic: string
  readonly errorTag: string
  readonly count: number
}

const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolve(port))
    })
  })
)

/** A seed service as `pnpm run services` starts it: its own database, `OPS_PORT`, the shared `ADMIN_TOKEN`. */
const startService = (pkg: string, name: string, prefix: string, env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const serverUrl = yield* Database.url
    const database = `kpipe_test_ops_${pkg.replace("-", "_")}_${Date.now().toString(36)}`
    yield* Effect.addFinalizer(() =>
      Database.onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(database)} WITH (FORCE)`).pipe(
        Effect.ignoreLogged
      )
    )
    const [port, opsPort] = [yield* freePort, yield* freePort]
    const service = yield* ServiceProcess.start({
      name,
      entry: fileURLToPath(new URL(`../../${pkg}/src/main.ts`, import.meta.url)),
      env: {
        DATABASE_URL: Database.withDatabase(Redacted.value(serverUrl), database),
        TOPIC_PREFIX: prefix,
        PORT: String(port),
        OPS_PORT: String(opsPort),
        ADMIN_TOKEN: token,
        ...env
      },
      readyTimeout: "90 seconds",
      stopTimeout: "20 seconds"
    })
    assert.strictEqual(service.port, port, "ServiceProcess reads the service's own port, not the ops port")
    assert.include(service.output(), `ops API and console at http://127.0.0.1:${opsPort}/console`)
    return { service, opsUrl: `http://127.0.0.1:${opsPort}` }
  })

describe("the seed services' ops APIs through one gateway", () => {
  it.live(
    "auth-service and d-day-service processes serve theirs on OPS_PORT; a poison member event shows under d-day-service and is parked there",
    () =>
      Effect.gen(function*() {
        const prefix = `${TestKafka.uniqueName("ops-services")}.`
        const [auth, dday] = yield* Effect.all([
          startService("auth-service", "auth-service", prefix),
          startService("dday-service", "d-day-service", prefix, { AUTH_SERVICE_URL: "http://127.0.0.1:9" })
        ], { concurrency: 2 })
        const gateway = yield* Layer.build(
          OpsGateway.layer({
            port: 0,
            token: Redacted.make(token),
            services: [{ name: "auth-service", urls: [auth.opsUrl] }, { name: "d-day-service", urls: [dday.opsUrl] }]
          }).pipe(Layer.provide(TestLogging.layer))
        )
        const base = `http://127.0.0.1:${
          (Context.get(gateway, HttpServer.HttpServer).address as HttpServer.TcpAddress).port
        }/services`
        const call = <A>(path: string, body?: unknown) =>
          Effect.tryPromise(async () => {
            const response = await fetch(`${base}${path}`, {
              method: body === undefined ? "GET" : "POST",
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
              ...(body === undefined ? {} : { body: JSON.stringify(body) })
            })
            return { status: response.status, json: await response.json() as A }
          })

        for (const name of ["auth-service", "d-day-service"]) {
          const health = yield* call<{ readonly openFailures: number }>(`/${name}/ops/health`)
          assert.strictEqual(health.status, 200, JSON.stringify(health.json))
          assert.strictEqual(health.json.openFailures, 0)
        }

        // Not an event at all: d-day-service's member-events consumer dead-letters it.
        yield* Effect.flatMap(Producer.Producer, (producer) =>
          producer.send({
            topic: `${prefix}member-events`,
            messages: [{ key: "m-poison", value: Buffer.from("not json"), headers: {} }]
          })).pipe(Effect.provide(TestKafka.layer))
        yield* Eventually.eventually(
          Effect.map(call<ReadonlyArray<Group>>("/d-day-service/ops/failures/groups"), (r) => r.json.length === 1),
          "60 seconds",
          "the poison event's group under d-day-service"
        )
        const [group] = (yield* call<ReadonlyArray<Group>>("/d-day-service/ops/failures/groups")).json
        assert.deepInclude(group, { topic: `${prefix}member-events`, errorTag: "DecodeError", count: 1 })
        assert.deepStrictEqual((yield* call("/auth-service/ops/failures/groups")).json, [])

        const dry = yield* call<{ readonly count: number }>("/d-day-service/ops/redrive/dry-run", {
          selection: { topic: group!.topic }
        })
        assert.strictEqual(dry.json.count, 1)
        const parked = yield* call<{ readonly count: number }>("/d-day-service/ops/park", {
          selection: { topic: group!.topic },
          reason: "not an event: test data"
        })
        assert.strictEqual(parked.json.count, 1)
        assert.deepStrictEqual((yield* call("/d-day-service/ops/failures/groups")).json, [])
        assert.strictEqual(
          (yield* call<{ readonly openFailures: number }>("/d-day-service/ops/health")).json.openFailures,
          0
        )

        assert.strictEqual(yield* auth.service.stop, 0, auth.service.output())
        assert.strictEqual(yield* dday.service.stop, 0, dday.service.output())
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
