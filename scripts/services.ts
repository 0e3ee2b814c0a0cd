// `pnpm run services`: brings up whatever infrastructure is not reachable yet, creates the service
// databases and the registry's topics, starts every seed service as its own process, shows their
// readiness (`/health/ready`), restarts one that exits on its own (with backoff, counted), serves
// one ops console over every service's ops API (`OpsGateway`), and on Ctrl-C stops them all
// gracefully (consumers drain) and the broker it started.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SeedTopics } from "@kpipe/contracts"
import { Infrastructure, ServiceProcess } from "@kpipe/devtools"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { MailCatcher, SmsCatcher } from "@kpipe/order-service"
import { Topic, TopicAdmin } from "@kpipe/pipeline"
import { OpsGateway, ParentWatch, ServiceMain } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"

interface ServiceSpec {
  readonly name: string
  readonly entry: string
  readonly database: string
  readonly port: number
  /** Its OpsServer (`OPS_PORT`), reached through the console's gateway. */
  readonly opsPort: number
  /** The console's name for it: replicas share one, their database. */
  readonly group: string
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
  opsOffset: Config.integer("OPS_PORT_OFFSET").pipe(
    Config.withDefault(100),
    Config.withDescription("Each service's ops API listens on its port plus this")
  ),
  consolePort: Config.integer("OPS_CONSOLE_PORT").pipe(
    Config.withDefault(3100),
    Config.withDescription("Port of the ops console over every service")
  ),
  topicPrefix: Config.string("TOPIC_PREFIX").pipe(Config.withDefault("")),
  databasePrefix: Config.string("DATABASE_PREFIX").pipe(Config.withDefault("kpipe_"))
})

// Development mode: one made-up admin token for every service, shown once below (services never log it).
const adminToken = process.env["ADMIN_TOKEN"] ?? randomBytes(24).toString("base64url")

const colors = [36, 33, 35, 32, 34, 91, 92, 93, 94, 95]

const plan = Effect.map(settings, (s): ReadonlyArray<ServiceSpec> => [
  {
    name: "auth-service",
    group: "auth-service",
    entry: entry("auth-service"),
    database: `${s.databasePrefix}auth`,
    port: s.authPort,
    opsPort: s.authPort + s.opsOffset,
    http: true
  },
  {
    name: "d-day-service",
    group: "d-day-service",
    entry: entry("dday-service"),
    database: `${s.databasePrefix}dday`,
    port: s.ddayPort,
    opsPort: s.ddayPort + s.opsOffset,
    env: { AUTH_SERVICE_URL: `http://127.0.0.1:${s.authPort}` },
    http: true
  },
  ...Array.from({ length: s.accountReplicas }, (_, replica) => ({
    name: `account-service-${replica + 1}`,
    group: "account-service",
    entry: entry("account-service"),
    database: `${s.databasePrefix}account`,
    port: s.accountPort + replica,
    opsPort: s.accountPort + replica + s.opsOffset,
    env: { REPLICA: String(replica) },
    http: true
  })),
  ...Array.from({ length: s.couponReplicas }, (_, replica) => ({
    name: s.couponReplicas === 1 ? "coupon-service" : `coupon-service-${replica + 1}`,
    group: "coupon-service",
    entry: entry("coupon-service"),
    database: `${s.databasePrefix}coupon`,
    port: s.couponPort + replica,
    opsPort: s.couponPort + replica + s.opsOffset,
    env: { REPLICA: String(replica) },
    http: true
  })),
  {
    name: "order-service",
    group: "order-service",
    entry: entry("order-service"),
    database: `${s.databasePrefix}order`,
    port: s.orderPort,
    opsPort: s.orderPort + s.opsOffset,
    env: {
      SMTP_PORT: String(s.smtpPort),
      SMS_URL: `http://127.0.0.1:${s.smsPort}/sms`,
      SMS_TOKEN: smsToken
    },
    http: true
  },
  {
    name: "commerce-service",
    group: "commerce-service",
    entry: entry("commerce-service"),
    database: `${s.databasePrefix}commerce`,
    port: s.commercePort,
    opsPort: s.commercePort + s.opsOffset,
    http: true
  },
  {
    name: "metrics-service",
    group: "metrics-service",
    entry: entry("metrics-service"),
    database: `${s.databasePrefix}metrics`,
    port: s.metricsPort,
    opsPort: s.metricsPort + s.opsOffset,
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

interface Status {
  readonly pid: number
  readonly state: string
  readonly restarts: number
}

/** What `/health/ready` says, as one short text: "ready", or the failing checks. */
const readiness = (port: number) =>
  Effect.tryPromise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(3000) })
    const report = await response.json() as {
      readonly checks: ReadonlyArray<{ readonly name: string; readonly ok: boolean; readonly detail?: string }>
    }
    const failing = report.checks.filter((check) => !check.ok)
    return response.status === 200
      ? `ready (${report.checks.length} checks)`
      : `not ready: ${failing.map((check) => `${check.name}${check.detail ? ` (${check.detail})` : ""}`).join(", ")}`
  })

/** Between restarts of a service that exited on its own: 1 s doubling to 30 s, from 1 s again after a minute up. */
const restartBackoff = Schedule.exponential("1 second").pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(30))),
  Schedule.resetAfter("1 minute")
)

/**
 * One service process at a time, in a process group of its own (`ServiceProcess`): Ctrl-C reaches
 * only this script, which stops each service once, with SIGTERM, instead of the terminal's signal
 * and ours racing in every service; SIGKILL if it will not go within 20 s. It is ready once
 * `/health/ready` answers 200. A process that exits on its own is started again after
 * `restartBackoff`, counted in its status.
 */
const superviseService = (spec: ServiceSpec, databaseUrl: string, color: number) =>
  Effect.gen(function*() {
    const tag = `\u001b[${color}m${spec.name.padEnd(20)}\u001b[0m|`
    const say = (text: string) => Effect.sync(() => process.stdout.write(`${tag} ${text}\n`))
    const status = yield* Ref.make<Status>({ pid: 0, state: "starting", restarts: 0 })
    const firstStart = yield* Deferred.make<string>()

    const runOnce = Effect.gen(function*() {
      // What the readiness poll last saw: the state shown once it is ready, without asking again
      // (a second request could time out, or land in a rebalance, and fail a service that was ready).
      let lastReadiness = "starting"
      const service = yield* ServiceProcess.spawn({
        name: spec.name,
        entry: spec.entry,
        execArgv: ServiceMain.nodeFlags,
        env: {
          DATABASE_URL: databaseUrl,
          PORT: String(spec.port),
          OPS_PORT: String(spec.opsPort),
          KPIPE_ENV: "development",
          ADMIN_TOKEN: adminToken,
          // The same identity across this process's restarts: a restarted consumer removes its
          // killed predecessor from the group instead of waiting for its session to time out.
          KAFKA_CONSUMER_INSTANCE_ID: spec.name,
          ...spec.env
        },
        ready: Effect.map(readiness(spec.port), (state) => {
          lastReadiness = state
          return state.startsWith("ready")
        }),
        readyTimeout: "120 seconds",
        onLine: (line) => process.stdout.write(`${tag} ${line}\n`),
        keepOutput: false
      })
      yield* Ref.update(status, (s) => ({ ...s, pid: service.pid, state: "starting" }))
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          if (!(yield* service.isRunning)) return
          yield* service.signal("SIGTERM")
          // A finalizer is uninterruptible: the wait alone interruptible, or the timeout would wait for the exit.
          const exit = yield* service.exitStatus.pipe(Effect.interruptible, Effect.timeout("20 seconds"), Effect.option)
          if (exit._tag === "None") {
            yield* service.kill
            yield* say("did not stop within 20 s; killed")
          } else {
            yield* say(`stopped (exit ${exit.value.code ?? exit.value.signal})`)
          }
        })
      )
      const state = yield* service.awaitReady.pipe(
        Effect.map(() => lastReadiness),
        Effect.catchAll((error) =>
          Effect.succeed(
            "reason" in error && error.reason === "NotReady" ? "not ready after 120 s" : "exited before it was ready"
          )
        )
      )
      const { restarts } = yield* Ref.updateAndGet(status, (s) => ({ ...s, state }))
      if (restarts > 0) yield* say(`${state} again (restart ${restarts}, pid ${service.pid})`)
      yield* Deferred.succeed(firstStart, state)
      const exit = yield* service.exitStatus
      return `exit ${exit.code ?? exit.signal}`
    }).pipe(Effect.scoped)

    const supervise = runOnce.pipe(
      Effect.tap((ended) =>
        Ref.updateAndGet(status, (s) => ({ ...s, state: `restarting (${ended})`, restarts: s.restarts + 1 })).pipe(
          Effect.flatMap((s) => say(`exited unexpectedly (${ended}); restart ${s.restarts} after backoff`))
        )
      ),
      Effect.repeat(restartBackoff)
    )
    yield* Effect.forkScoped(supervise)
    return { spec, status, firstStart: Deferred.await(firstStart) }
  })

const statusLines = (running: ReadonlyArray<{ readonly spec: ServiceSpec; readonly status: Ref.Ref<Status> }>) =>
  Effect.forEach(
    running,
    ({ spec, status }) =>
      Effect.map(
        Ref.get(status),
        ({ pid, restarts, state }) =>
          `  ${spec.name.padEnd(20)} pid ${String(pid).padEnd(8)} ${state.padEnd(20)} restarts ${
            String(restarts).padEnd(3)
          } http://127.0.0.1:${spec.port}  docs: /docs  health: /health/ready  metrics: /metrics  ops: :${spec.opsPort}`
      )
  )

const program = Effect.gen(function*() {
  // Started by a test or another tool that dies: stop the services too, not leave them running.
  yield* Layer.build(ParentWatch.layer)
  yield* Effect.addFinalizer(() => Effect.log("stopped"))
  const services = yield* plan
  const { topicPrefix } = yield* settings
  const { startedHere } = yield* Infrastructure.ensureKafka
  if (startedHere) yield* Effect.addFinalizer(() => Infrastructure.stopLocalKafka)
  yield* Infrastructure.checkRedis
  const urlFor = yield* ensureDatabases(services.map((s) => s.database))
  const created = yield* createTopics(topicPrefix)
  yield* Effect.log(`topics ready (${created.length} created)`)
  yield* receivers
  // Each step of a stop logged as it begins (finalizers run last-added first): a stop that hangs shows where.
  const stopping = (what: string) => Effect.addFinalizer(() => Effect.log(`stopping ${what}`))
  yield* stopping("the SMTP and SMS receivers")

  // Ctrl-C stops every service at once: one by one, a few slow consumer departures (a rebalance in
  // progress, up to 20 s each) add up to minutes.
  const servicesScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.parallel)
  yield* stopping(`${services.length} services`)
  const running = yield* Effect.forEach(
    services,
    (spec, i) =>
      superviseService(spec, urlFor(spec.database), colors[i % colors.length]!).pipe(Scope.extend(servicesScope)),
    { concurrency: "unbounded" }
  )
  const states = yield* Effect.forEach(running, ({ firstStart }) => firstStart, { concurrency: "unbounded" })
  const { consolePort } = yield* settings
  yield* Layer.build(OpsGateway.layer({
    port: consolePort,
    token: Redacted.make(adminToken),
    services: [...new Set(services.map((spec) => spec.group))].map((group) => ({
      name: group,
      urls: services.filter((spec) => spec.group === group).map((spec) => `http://127.0.0.1:${spec.opsPort}`)
    }))
  }))
  yield* stopping("the ops console")
  process.stdout.write(
    `\nservices:\n${(yield* statusLines(running)).join("\n")}\n\nadmin token (KPIPE_ENV=development): ${adminToken}\n` +
      `  e.g. export ADMIN='Authorization: Bearer ${adminToken}'\n` +
      `ops console of every service: http://127.0.0.1:${consolePort}/console (paste the admin token)\n` +
      `  API: curl -H "$ADMIN" http://127.0.0.1:${consolePort}/services/order-service/ops/failures/groups\n` +
      `\nCtrl-C stops everything.\n\n`
  )
  if (states.some((state) => !state.startsWith("ready"))) {
    return yield* Effect.fail(new Error("a service did not start; stopping the others"))
  }
  // Every minute, and after a restart, the status lines again.
  let shownRestarts = 0
  yield* Effect.gen(function*() {
    const statuses = yield* Effect.forEach(running, ({ status }) => Ref.get(status))
    const restarts = statuses.reduce((sum, s) => sum + s.restarts, 0)
    if (
      restarts !== shownRestarts && statuses.every((s) => !s.state.startsWith("restarting") && s.state !== "starting")
    ) {
      shownRestarts = restarts
      process.stdout.write(`\nservices (${restarts} restarts):\n${(yield* statusLines(running)).join("\n")}\n\n`)
    }
  }).pipe(Effect.repeat(Schedule.spaced("1 second")), Effect.zipRight(Effect.never))
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
