// Flash-sale benchmark of coupon-service against the real Redis, Kafka and PostgreSQL of this
// machine: the service runs in this process on a real port (fresh database, topic prefix and Redis
// key prefix), a load generator in a child process (undici, keep-alive) fires BENCH_REQUESTS issue
// requests from distinct users, BENCH_IN_FLIGHT at a time, for one coupon of BENCH_QUANTITY.
// Prints the request rate, API latency percentiles, the answers, and the time until every accepted
// request is ISSUED in the database (settled). A warm-up sale on another coupon runs first.
// Usage: pnpm bench:coupons (BENCH_REQUESTS, BENCH_QUANTITY, BENCH_IN_FLIGHT, BENCH_WARMUP).
import * as HttpServer from "@effect/platform/HttpServer"
import { SqlClient } from "@effect/sql/SqlClient"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import { HttpServe } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import { spawn } from "node:child_process"
import * as Os from "node:os"
import { fileURLToPath } from "node:url"
import { CreateCouponRequest } from "../src/CouponApi.ts"
import { CouponConfig } from "../src/CouponConfig.ts"
import { IssueFastRoute } from "../src/CouponHttp.ts"
import { CouponIssuer } from "../src/CouponIssuer.ts"
import * as CouponService from "../src/CouponService.ts"
import * as IssuePublisher from "../src/IssuePublisher.ts"
import * as CouponMigrations from "../src/Migrations.ts"

const BenchConfig = Config.all({
  requests: Config.integer("BENCH_REQUESTS").pipe(Config.withDefault(10_000)),
  quantity: Config.integer("BENCH_QUANTITY").pipe(Config.withDefault(1_000)),
  inFlight: Config.integer("BENCH_IN_FLIGHT").pipe(Config.withDefault(200)),
  warmup: Config.integer("BENCH_WARMUP").pipe(Config.withDefault(5_000))
})

class BenchFailure extends Data.TaggedError("BenchFailure")<{ readonly message: string }> {}

interface LoadResult {
  readonly startedAt: number
  readonly elapsedMs: number
  readonly answers: Record<string, number>
  readonly latencies: ReadonlyArray<number>
  readonly kinds: ReadonlyArray<string>
  readonly cpuMs: number
}

const loadgen = fileURLToPath(new URL("loadgen.ts", import.meta.url))

const runLoad = (origin: string, couponId: number, firstUser: number, count: number, inFlight: number) =>
  Effect.async<LoadResult, BenchFailure>((resume) => {
    const child = spawn(process.execPath, [
      loadgen,
      origin,
      String(couponId),
      String(firstUser),
      String(count),
      String(inFlight)
    ], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.on("exit", (code) =>
      resume(
        code === 0
          ? Effect.try({
            try: () => JSON.parse(output) as LoadResult,
            catch: () => new BenchFailure({ message: `load generator printed ${output.slice(0, 200)}` })
          })
          : Effect.fail(new BenchFailure({ message: `load generator exited with ${code}` }))
      ))
    return Effect.sync(() => child.kill())
  })

const percentile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN

const issuedCount = (couponId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM user_coupons WHERE coupon_id = ${couponId}`.pipe(
        Effect.map((rows) => rows[0]!.n)
      )
  )

/**
 * Runs one sale; returns the load result and when (epoch ms) the database had issued every accepted
 * request. The issued count is sampled every 10 ms from the start, while the load runs.
 */
const sale = (origin: string, couponId: number, firstUser: number, count: number, inFlight: number) =>
  Effect.gen(function*() {
    const samples: Array<{ readonly at: number; readonly issued: number }> = []
    const sampler = yield* issuedCount(couponId).pipe(
      Effect.flatMap((issued) => Effect.sync(() => samples.push({ at: Date.now(), issued }))),
      Effect.zipRight(Effect.sleep("10 millis")),
      Effect.forever,
      Effect.fork
    )
    const result = yield* runLoad(origin, couponId, firstUser, count, inFlight)
    const accepted = Object.entries(result.answers)
      .filter(([answer]) => answer.startsWith("202"))
      .reduce((n, [, c]) => n + c, 0)
    while (!samples.some((sample) => sample.issued >= accepted)) yield* Effect.sleep("10 millis")
    yield* Fiber.interrupt(sampler)
    const settledAt = samples.find((sample) => sample.issued >= accepted)!.at
    return { result, accepted, settledAt }
  })

const program = Effect.gen(function*() {
  const bench = yield* BenchConfig
  const issuer = yield* CouponIssuer
  const server = yield* HttpServer.HttpServer
  const address = server.address
  if (address._tag !== "TcpAddress") return yield* new BenchFailure({ message: "not a TCP server" })
  const origin = `http://127.0.0.1:${address.port}`
  const now = yield* DateTime.now
  const coupon = (name: string, quantity: number) =>
    issuer.create(
      new CreateCouponRequest({
        name,
        totalQuantity: quantity,
        validFrom: DateTime.subtract(now, { minutes: 1 }),
        validUntil: DateTime.add(now, { hours: 1 })
      })
    )
  const out = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

  if (bench.warmup > 0) {
    const warm = yield* coupon("warm-up", Math.max(1, Math.round(bench.warmup / 10)))
    yield* sale(origin, warm.couponId, 1_000_000, bench.warmup, bench.inFlight)
    yield* out(`warm-up: ${bench.warmup} requests done`)
  }

  const main = yield* coupon("flash sale", bench.quantity)
  const cpuBefore = process.cpuUsage()
  const batchesBefore = yield* Metric.value(IssuePublisher.batchSize)
  const { accepted, result, settledAt } = yield* sale(origin, main.couponId, 1, bench.requests, bench.inFlight)
  const cpu = process.cpuUsage(cpuBefore)
  const batches = yield* Metric.value(IssuePublisher.batchSize)
  const sorted = [...result.latencies].sort((a, b) => a - b)
  const seconds = result.elapsedMs / 1000
  const ms = (value: number) => `${value.toFixed(1)} ms`
  const sends = batches.count - batchesBefore.count
  const answersEnd = result.startedAt + result.elapsedMs
  const issued = yield* issuedCount(main.couponId)

  yield* out("")
  yield* out(
    `coupon-service flash sale: ${bench.requests} requests, quantity ${bench.quantity}, ${bench.inFlight} in flight (keep-alive)`
  )
  yield* out(`  answers           ${JSON.stringify(result.answers)}`)
  yield* out(`  throughput        ${(bench.requests / seconds).toFixed(0)} requests/s (${seconds.toFixed(2)} s)`)
  yield* out(
    `  API latency       p50 ${ms(percentile(sorted, 0.5))}  p90 ${ms(percentile(sorted, 0.9))}  p99 ${
      ms(percentile(sorted, 0.99))
    }  max ${ms(sorted[sorted.length - 1] ?? 0)}`
  )
  for (const kind of Object.keys(result.answers).sort()) {
    const of = result.latencies.filter((_, i) => result.kinds[i] === kind).sort((a, b) => a - b)
    yield* out(
      `    ${kind.padEnd(18)}p50 ${ms(percentile(of, 0.5))}  p99 ${ms(percentile(of, 0.99))}  max ${
        ms(of[of.length - 1] ?? 0)
      }`
    )
  }
  yield* out(
    `  settled           ${accepted} accepted, ${issued} issued in the database ${
      ((settledAt - result.startedAt) / 1000).toFixed(2)
    } s after the first request (${Math.abs((settledAt - answersEnd) / 1000).toFixed(2)} s ${
      settledAt < answersEnd ? "before" : "after"
    } the last answer)`
  )
  yield* out(
    `  producer          ${sends} requests for ${accepted} events (${
      (accepted / Math.max(1, sends)).toFixed(1)
    } per send)`
  )
  const serviceCpuMs = (cpu.user + cpu.system) / 1000
  yield* out(
    `  CPU               service ${(serviceCpuMs / seconds / 10).toFixed(0)} % of a core (${
      (serviceCpuMs * 1000 / bench.requests).toFixed(0)
    } µs per request, consumer included), load generator ${(result.cpuMs / result.elapsedMs * 100).toFixed(0)} %`
  )
  yield* out(
    `  machine           load average ${Os.loadavg().map((n) => n.toFixed(2)).join(" ")} on ${Os.cpus().length} cores`
  )
  if (issued !== accepted || accepted !== Math.min(bench.quantity, bench.requests)) {
    return yield* new BenchFailure({
      message: `expected ${Math.min(bench.quantity, bench.requests)} issued, got ${issued}`
    })
  }
})

const main = Effect.gen(function*() {
  const run = Date.now().toString(36)
  const serverUrl = yield* Database.url
  const database = `kpipe_coupon_bench_${run}`
  const url = Redacted.make(Database.withDatabase(Redacted.value(serverUrl), database))
  yield* Effect.acquireRelease(
    Database.ensureExists(url),
    () =>
      Database.onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(database)} WITH (FORCE)`).pipe(
        Effect.ignore
      )
  )
  const keyPrefix = `kpipe-bench:${run}:coupon:`
  const provider = ConfigProvider.fromMap(
    new Map([
      ["DATABASE_URL", Redacted.value(url)],
      ["TOPIC_PREFIX", `bench-${run}.`],
      ["REDIS_KEY_PREFIX", keyPrefix],
      ["PG_MAX_CONNECTIONS", "10"]
    ])
  ).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))

  const Server = HttpServe.layer({
    defaultPort: Config.succeed(0),
    logRequests: false,
    fastRoutes: Effect.map(IssueFastRoute, (route) => [route])
  }).pipe(
    Layer.provideMerge(CouponService.layer),
    Layer.provideMerge(
      Layer.mergeAll(
        CouponMigrations.databaseLayer,
        CouponService.RedisLive,
        Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv)),
        AlertSink.layerLog
      )
    )
  )
  // The bench leaves nothing behind on the shared Redis and broker.
  const cleanup = Effect.gen(function*() {
    const config = yield* CouponConfig
    const redis = yield* Redis.Redis
    const admin = yield* Admin.Admin
    yield* redis.use(async (client) => {
      let cursor = "0"
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${config.keyPrefix}*`, "COUNT", 1000)
        cursor = next
        if (keys.length > 0) await client.del(...keys)
      } while (cursor !== "0")
    })
    yield* admin.deleteTopics([config.topic.name, config.topic.deadLetter.name])
  }).pipe(
    Effect.provide(
      Layer.mergeAll(
        CouponConfig.Default,
        Redis.layerFromEnv,
        Admin.layer.pipe(Layer.provide(KafkaClient.layerFromEnv))
      )
    ),
    Effect.ignore
  )
  yield* program.pipe(Effect.provide(Server), Effect.ensuring(cleanup), Effect.withConfigProvider(provider))
}).pipe(Effect.scoped)

main.pipe(
  Logger.withMinimumLogLevel(LogLevel.Warning),
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`bench failed: ${error.message}\n`)
      process.exitCode = 1
    })
  ),
  Effect.runPromise
)
