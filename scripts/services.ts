// `pnpm run services`: brings up whatever infrastructure is not reachable yet, creates the service
// databases and the registry's topics, starts every seed service as its own process, shows their
// state, and on Ctrl-C stops them all gracefully (consumers drain) and the broker it started.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SeedTopics } from "@kpipe/contracts"
import { Infrastructure, ServiceProcess } from "@kpipe/devtools"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { MailCatcher, SmsCatcher } from "@kpipe/order-service"
import { Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { randomBytes } from "node:crypto"
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
  orderPort: Config.integer("ORDER_PORT").pipe(Config.withDefault(3030)),
  smtpPort: Config.integer("SMTP_PORT").pipe(Config.withDefault(2525)),
  smsPort: Config.integer("SMS_PORT").pipe(Config.withDefault(2526)),
  commercePort: Config.integer("COMMERCE_PORT").pipe(Config.withDefault(3040)),
  metricsPort: Config.integer("METRICS_PORT").pipe(Config.withDefault(3050)),
  topicPrefix: Config.string("TOPIC_PREFIX").pipe(Config.withDefault(""))
})

// Development mode: one made-up admin token for every service, shown once below (services never log it).
const adminToken = process.env["ADMIN_TOKEN"] ?? randomBytes(24).toString("base64url")

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
    name: "order-service",
    entry: entry("order-service"),
    database: "kpipe_order",
    port: s.orderPort,
    env: {
      SMTP_PORT: String(s.smtpPort),
      SMS_URL: `http://127.0.0.1:${s.smsPort}/sms`,
      SMS_TOKEN: smsToken
    },
    http: true
  },
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

const smsToken = "local-sms-token"

/** order-service's SMTP and SMS receivers (stand-ins for the mail server and the SMS provider), printing what arrives. */
const receivers = Effect.gen(function*() {
  const { smsPort, smtpPort } = yield* settings
  const tag = "\u001b[90mreceivers           \u001b[0m|"
  yield* MailCatcher.make({
    port: smtpPort,
    onMail: (mail) => process.stdout.write(`${tag} e-mail to ${mail.to.join(", ")}: ${mail.subject}\n`)
  })
  yield* SmsCatcher.make({
    port: smsPort,
    token: smsToken,
    onSms: (sms) => process.stdout.write(`${tag} SMS to ${sms.to}: ${sms.text}\n`)
  })
  yield* Effect.log(`receivers ready: SMTP on 127.0.0.1:${smtpPort}, SMS on http://127.0.0.1:${smsPort}/sms`)
})

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

/**
 * One service process for the life of the scope, in a process group of its own (`ServiceProcess`):
 * Ctrl-C reaches only this script, which stops each service once, with SIGTERM, instead of the
 * terminal's signal and ours racing in every service. SIGKILL if it will not go within 20 s.
 */
const runService = (spec: ServiceSpec, databaseUrl: string, color: number) =>
  Effect.gen(function*() {
    const tag = `\u001b[${color}m${spec.name.padEnd(20)}\u001b[0m|`
    const service = yield* ServiceProcess.spawn({
      name: spec.name,
      entry: spec.entry,
      env: {
        DATABASE_URL: databaseUrl,
        PORT: String(spec.port),
        KPIPE_ENV: "development",
        ADMIN_TOKEN: adminToken,
        ...spec.env
      },
      ready: `${spec.name.replace(/-\d+$/, "")} ready`,
      readyTimeout: "120 seconds",
      onLine: (line) => process.stdout.write(`${tag} ${line}\n`),
      keepOutput: false
    })
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (!(yield* service.isRunning)) return
        yield* service.signal("SIGTERM")
        const status = yield* service.exitStatus.pipe(Effect.timeout("20 seconds"), Effect.option)
        if (status._tag === "None") {
          yield* service.kill
          process.stdout.write(`${tag} did not stop within 20 s; killed\n`)
        } else {
          process.stdout.write(`${tag} stopped (exit ${status.value.code ?? status.value.signal})\n`)
        }
      })
    )
    const state = service.awaitReady.pipe(
      Effect.as("ready"),
      Effect.catchAll((error) =>
        error.reason === "Exited"
          ? Effect.map(service.exited, (code) => `exited (${code})`)
          : Effect.succeed("not ready after 120 s")
      )
    )
    return { spec, service, state }
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
  yield* receivers

  const running = yield* Effect.forEach(
    services,
    (spec, i) => runService(spec, urlFor(spec.database), colors[i % colors.length]!),
    { concurrency: "unbounded" }
  )
  const states = yield* Effect.forEach(running, ({ state }) => state, { concurrency: "unbounded" })

  const lines = running.map(({ service, spec }, i) =>
    `  ${spec.name.padEnd(20)} pid ${String(service.pid).padEnd(8)} ${
      states[i]!.padEnd(12)
    } http://127.0.0.1:${spec.port}  docs: http://127.0.0.1:${spec.port}/docs`
  )
  process.stdout.write(
    `\nservices:\n${lines.join("\n")}\n\nadmin token (KPIPE_ENV=development): ${adminToken}\n` +
      `  e.g. export ADMIN='Authorization: Bearer ${adminToken}'\n\nCtrl-C stops everything.\n\n`
  )
  if (states.some((state) => state !== "ready")) {
    return yield* Effect.fail(new Error("a service did not start; stopping the others"))
  }
  yield* Effect.raceAll(
    running.map(({ service, spec }) =>
      Effect.flatMap(
        service.exited,
        (code) => Effect.fail(new Error(`${spec.name} exited (${code}); stopping the others`))
      )
    )
  )
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
