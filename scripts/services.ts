// `pnpm run services`: brings up whatever infrastructure is not reachable yet, creates the service
// databases and the registry's topics, starts every seed service as its own process, shows their
// state, and on Ctrl-C stops them all gracefully (consumers drain) and the broker it started.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SeedTopics } from "@kpipe/contracts"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { Infrastructure } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

interface ServiceSpec {
  readonly name: string
  readonly entry: string
  readonly database: string
  readonly port: number
  readonly env?: Record<string, string>
  readonly http: boolean
}

const root = fileURLToPath(new URL("..", import.meta.url))
const entry = (pkg: string) => `${root}packages/${pkg}/src/main.ts`

const settings = Config.all({
  accountReplicas: Config.integer("ACCOUNT_REPLICAS").pipe(Config.withDefault(3)),
  couponReplicas: Config.integer("COUPON_REPLICAS").pipe(Config.withDefault(1)),
  authPort: Config.integer("AUTH_PORT").pipe(Config.withDefault(3001)),
  ddayPort: Config.integer("DDAY_PORT").pipe(Config.withDefault(3002)),
  accountPort: Config.integer("ACCOUNT_PORT").pipe(Config.withDefault(3010)),
  couponPort: Config.integer("COUPON_PORT").pipe(Config.withDefault(3020)),
  commercePort: Config.integer("COMMERCE_PORT").pipe(Config.withDefault(3030)),
  metricsPort: Config.integer("METRICS_PORT").pipe(Config.withDefault(3040)),
  topicPrefix: Config.string("TOPIC_PREFIX").pipe(Config.withDefault(""))
})

const colors = [36, 33, 35, 32, 34, 91, 92, 93, 94, 95]

const plan = Effect.map(settings, (s): ReadonlyArray<ServiceSpec> => [
  { name: "auth-service", entry: entry("auth-service"), database: "kpipe_auth", port: s.authPort, http: true },
  {
    name: "d-day-service",
    entry: entry("dday-service"),
    database: "kpipe_dday",
    port: s.ddayPort,
    env: { AUTH_SERVICE_URL: `http://127.0.0.1:${s.authPort}` },
    http: true
  },
  ...Array.from({ length: s.accountReplicas }, (_, replica) => ({
    name: `account-service-${replica + 1}`,
    entry: entry("account-service"),
    database: "kpipe_account",
    port: s.accountPort + replica,
    env: { REPLICA: String(replica) },
    http: true
  })),
  ...Array.from({ length: s.couponReplicas }, (_, replica) => ({
    name: s.couponReplicas === 1 ? "coupon-service" : `coupon-service-${replica + 1}`,
    entry: entry("coupon-service"),
    database: "kpipe_coupon",
    port: s.couponPort + replica,
    env: { REPLICA: String(replica) },
    http: true
  })),
  {
    name: "commerce-service",
    entry: entry("commerce-service"),
    database: "kpipe_commerce",
    port: s.commercePort,
    http: true
  },
  {
    name: "metrics-service",
    entry: entry("metrics-service"),
    database: "kpipe_metrics",
    port: s.metricsPort,
    env: { COMMERCE_SERVICE_URL: `http://127.0.0.1:${s.commercePort}` },
    http: true
  }
])

const ensureDatabases = (names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const url = yield* Database.url
    yield* Database.onServer(url, (sql) =>
      Effect.forEach(new Set(names), (name) =>
        sql`SELECT 1 FROM pg_database WHERE datname = ${name}`.pipe(
          Effect.flatMap((found) =>
            found.length > 0 ? Effect.void : sql`CREATE DATABASE ${sql(name)}`
          )
        ), { discard: true }))
    return (name: string) => Database.withDatabase(Redacted.value(url), name)
  })

const createTopics = (prefix: string) =>
  TopicAdmin.create(SeedTopics.all.map((topic) => Topic.prefixed(topic, prefix))).pipe(
    Effect.provide(Admin.layer.pipe(Layer.provide(KafkaClient.layerFromEnv)))
  )

/** One service process for the life of the scope; SIGTERM on release, SIGKILL if it will not go. */
const runService = (spec: ServiceSpec, databaseUrl: string, color: number) =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void>()
    const exited = yield* Deferred.make<number | null>()
    const tag = `\u001b[${color}m${spec.name.padEnd(20)}\u001b[0m|`
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child: ChildProcess = spawn(process.execPath, [spec.entry], {
          env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(spec.port), ...spec.env },
          stdio: ["ignore", "pipe", "pipe"],
          // A process group of its own: Ctrl-C reaches only this script, which stops each service
          // once, with SIGTERM, instead of the terminal's signal and ours racing in every service.
          detached: true
        })
        const relay = (stream: NodeJS.ReadableStream | null) => {
          let rest = ""
          stream?.on("data", (chunk: Buffer) => {
            const lines = (rest + chunk.toString()).split("\n")
            rest = lines.pop() ?? ""
            for (const line of lines) {
              process.stdout.write(`${tag} ${line}\n`)
              if (line.includes(`${spec.name.replace(/-\d+$/, "")} ready`)) Deferred.unsafeDone(ready, Effect.void)
            }
          })
        }
        relay(child.stdout)
        relay(child.stderr)
        child.on("exit", (code) => Deferred.unsafeDone(exited, Effect.succeed(code)))
        return child
      }),
      (child) =>
        Effect.gen(function*() {
          if (child.exitCode !== null) return
          child.kill("SIGTERM")
          const code = yield* Deferred.await(exited).pipe(Effect.timeout("20 seconds"), Effect.option)
          if (code._tag === "None") {
            child.kill("SIGKILL")
            process.stdout.write(`${tag} did not stop within 20 s; killed\n`)
          } else {
            process.stdout.write(`${tag} stopped (exit ${code.value})\n`)
          }
        })
    )
    return { spec, child, ready, exited }
  })

const program = Effect.gen(function*() {
  const services = yield* plan
  const { topicPrefix } = yield* settings
  const { startedHere } = yield* Infrastructure.ensureKafka
  if (startedHere) yield* Effect.addFinalizer(() => Infrastructure.stopLocalKafka)
  yield* Infrastructure.checkRedis
  const urlFor = yield* ensureDatabases(services.map((s) => s.database))
  const created = yield* createTopics(topicPrefix)
  yield* Effect.log(`topics ready (${created.length} created)`)

  const running = yield* Effect.forEach(
    services,
    (spec, i) => runService(spec, urlFor(spec.database), colors[i % colors.length]!),
    { concurrency: "unbounded" }
  )
  const states = yield* Effect.forEach(running, (service) =>
    Effect.raceFirst(
      Effect.as(Deferred.await(service.ready), "ready" as const),
      Effect.map(Deferred.await(service.exited), (code) => `exited (${code})` as const)
    ).pipe(Effect.timeout("120 seconds"), Effect.orElseSucceed(() => "not ready after 120 s" as const)), {
    concurrency: "unbounded"
  })

  const lines = running.map(({ child, spec }, i) =>
    `  ${spec.name.padEnd(20)} pid ${String(child.pid).padEnd(8)} ${
      states[i]!.padEnd(12)
    } http://127.0.0.1:${spec.port}  docs: http://127.0.0.1:${spec.port}/docs`
  )
  process.stdout.write(`\nservices:\n${lines.join("\n")}\n\nCtrl-C stops everything.\n\n`)
  if (states.some((state) => state !== "ready")) {
    return yield* Effect.fail(new Error("a service did not start; stopping the others"))
  }
  yield* Effect.raceAll(
    running.map(({ exited, spec }) =>
      Effect.flatMap(
        Deferred.await(exited),
        (code) => Effect.fail(new Error(`${spec.name} exited (${code}); stopping the others`))
      )
    )
  )
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
