// Flash-sale benchmark of coupon-service against the real Redis, Kafka and PostgreSQL of this
// machine. The service runs as it is deployed: BENCH_REPLICAS processes of `src/main.ts` sharing one
// port (HTTP_REUSE_PORT, the kernel spreads the connections), on a fresh database, topic prefix and
// Redis key prefix. A load generator in another process (raw keep-alive HTTP/1.1, see loadgen.ts)
// fires BENCH_REQUESTS issue requests from distinct users, BENCH_IN_FLIGHT at a time, for one coupon
// of BENCH_QUANTITY. Prints the request rate, API latency percentiles, the answers, the time until
// every request is settled (answered, and every accepted one ISSUED in the database) and the CPU
// each process used. Before it, every partition of the topic receives records and a warm-up sale on
// another coupon runs. The sale runs BENCH_SALES times (2), each on its own coupon, and the resident
// memory of each process is read idle, after the warm-up and after each sale, so growth shows. Last,
// with the service stopped, the same load generator runs against bare node:http answering a fixed 202
// (bare-http.ts), and the API's throughput is printed as a share of it, which compares across machines.
// Usage: pnpm bench:coupons (BENCH_REQUESTS, BENCH_QUANTITY, BENCH_IN_FLIGHT, BENCH_WARMUP, BENCH_REPLICAS,
// BENCH_SALES, BENCH_SEPARATE_CONSUMER, BENCH_PRIME_PARTITIONS, BENCH_SERVICE_ARGS).
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchCpu, BenchMemory, BenchReport, BenchStats, ServiceProcess } from "@kpipe/devtools"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { TopicAdmin } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import { ServiceMain } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Os from "node:os"
import { fileURLToPath } from "node:url"
import * as CouponConfig from "../src/Config.ts"
import * as CouponDatabase from "../src/Database.ts"

const BenchConfig = Config.all({
  requests: Config.integer("BENCH_REQUESTS").pipe(Config.withDefault(10_000)),
  quantity: Config.integer("BENCH_QUANTITY").pipe(Config.withDefault(1_000)),
  inFlight: Config.integer("BENCH_IN_FLIGHT").pipe(Config.withDefault(64)),
  // V8 optimises the hot path only after some thousands of calls; the default measures a warm service.
  warmup: Config.integer("BENCH_WARMUP").pipe(Config.withDefault(20_000)),
  // One process is the fastest here: a second one costs more CPU than the spare the two cores have.
  replicas: Config.integer("BENCH_REPLICAS").pipe(Config.withDefault(1)),
  /** Measured sales, each on its own coupon: memory that grows from one to the next shows in the table. */
  sales: Config.integer("BENCH_SALES").pipe(
    Config.validate({ message: "at least 2 sales, to compare them", validation: (n) => n >= 2 }),
    Config.withDefault(2)
  ),
  /**
   * The consumer groups in a process of their own (`COUPON_ROLES`). Off by default: since the
   * consumers fetch fuller batches (`KAFKA_MIN_BYTES`) they cost the API's event loop less than a
   * third process costs the two cores.
   */
  separateConsumer: Config.boolean("BENCH_SEPARATE_CONSUMER").pipe(Config.withDefault(false)),
  /**
   * Whether every partition of the topic receives records before the warm-up, as a topic in use has
   * (see `primePartitions`); `false` measures the first sale on a brand-new topic.
   */
  primePartitions: Config.boolean("BENCH_PRIME_PARTITIONS").pipe(Config.withDefault(true)),
  /** Node flags for the service processes after `ServiceMain.nodeFlags`, e.g. `--cpu-prof --cpu-prof-dir=/tmp/profiles`. */
  serviceArgs: Config.string("BENCH_SERVICE_ARGS").pipe(
    Config.withDefault(""),
    Config.map((text) => text.split(" ").filter((arg) => arg !== ""))
  )
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
const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** The load generator as a process of its own; its one line of JSON is the result. */
const runLoad = (origin: string, couponId: number, firstUser: number, count: number, inFlight: number) =>
  Effect.scoped(Effect.gen(function*() {
    const generator = yield* ServiceProcess.spawn({
      name: "loadgen",
      entry: loadgen,
      args: [origin, String(couponId), String(firstUser), String(count), String(inFlight)],
      ready: false,
      onLine: (line) => {
        if (!line.startsWith("{")) process.stderr.write(`${line}\n`)
      }
    })
    const { code } = yield* generator.exitStatus
    const output = generator.lines().find((line) => line.startsWith("{")) ?? generator.output()
    if (code !== 0) return yield* new BenchFailure({ message: `load generator exited with ${code}` })
    return yield* Effect.try({
      try: () => JSON.parse(output) as LoadResult,
      catch: () => new BenchFailure({ message: `load generator printed ${output.slice(0, 200)}` })
    })
  })).pipe(
    Effect.catchTag("ServiceProcessError", (error) => new BenchFailure({ message: error.message }))
  )

const bareHttp = fileURLToPath(new URL("bare-http.ts", import.meta.url))

/** The requests/s the load generator gets from bare node:http, after the same warm-up as the service. */
const yardstick = (bench: Config.Config.Success<typeof BenchConfig>) =>
  Effect.scoped(Effect.gen(function*() {
    const port = yield* ServiceProcess.freePort
    const server = yield* ServiceProcess.start({ name: "bare-http", entry: bareHttp, args: [String(port)] }).pipe(
      Effect.catchTag("ServiceProcessError", (error) => new BenchFailure({ message: error.message }))
    )
    if (bench.warmup > 0) yield* runLoad(server.baseUrl, 1, 1_000_000, bench.warmup, bench.inFlight)
    const result = yield* runLoad(server.baseUrl, 1, 1, bench.requests, bench.inFlight)
    if (result.answers["202 Accepted"] !== bench.requests) {
      return yield* new BenchFailure({ message: `bare node:http answered ${JSON.stringify(result.answers)}` })
    }
    return bench.requests / (result.elapsedMs / 1000)
  }))

const issuedCount = (couponId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM user_coupons WHERE coupon_id = ${couponId}`.pipe(
        Effect.map((rows) => rows[0]!.n)
      )
  )

/** When (epoch ms, the database's clock) the last coupon of the sale was issued: its transaction's time. */
const lastIssuedAt = (couponId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ at: number }>`
        SELECT (extract(epoch FROM max(issued_at)) * 1000)::float8 AS at
        FROM user_coupons WHERE coupon_id = ${couponId}`.pipe(Effect.map((rows) => rows[0]!.at))
  )

/**
 * Runs one sale; returns the load result, when (epoch ms) the database was first seen holding every
 * accepted request, and when it issued the last one. The database is asked only after the last
 * answer: polling it while the load runs took a tenth of a core from the service being measured.
 */
const sale = (origin: string, couponId: number, firstUser: number, count: number, inFlight: number) =>
  Effect.gen(function*() {
    const result = yield* runLoad(origin, couponId, firstUser, count, inFlight)
    const accepted = Object.entries(result.answers)
      .filter(([answer]) => answer.startsWith("202"))
      .reduce((n, [, c]) => n + c, 0)
    yield* issuedCount(couponId).pipe(
      Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (n) => n >= accepted })
    )
    const issued = yield* issuedCount(couponId)
    const settledAt = Date.now()
    const issuedAt = accepted === 0 ? result.startedAt : yield* lastIssuedAt(couponId)
    return { result, accepted, issued, issuedAt, settledAt }
  })

const issueOne = (origin: string, couponId: number, userId: number) =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(`${origin}/api/coupons/${couponId}/issue`, {
        method: "POST",
        headers: { "x-user-id": String(userId) }
      })
      if (response.status !== 202) throw new Error(`${response.status} ${await response.text()}`)
    },
    catch: (cause) => new BenchFailure({ message: `issuing coupon ${couponId} failed: ${String(cause)}` })
  })

/**
 * A partition's first records can cost the broker a disk flush: here the first produce requests of
 * a sale on a never-used partition sometimes took 20–40 ms instead of 2–10 ms (kafkajs request
 * events), which put the sale's first ~100 answers past 50 ms; with the broker's log on tmpfs, or on
 * a partition that had records before, they did not. A topic in use has records in every partition,
 * so one unit of a throwaway coupon is sold at a time until every partition has some. Returns how
 * many.
 */
const primePartitions = (origin: string, adminToken: string, topic: string) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    for (let coupons = 0; coupons < 50; coupons++) {
      const ends = yield* admin.endOffsets(topic)
      if (ends.every(({ high }) => BigInt(high) > 0n)) return coupons
      yield* issueOne(origin, yield* createCoupon(origin, adminToken, `priming ${coupons}`, 1), 1)
    }
    return yield* new BenchFailure({ message: `some partition of ${topic} received no records from 50 coupons` })
  })

const createCoupon = (origin: string, adminToken: string, name: string, quantity: number) =>
  Effect.tryPromise({
    try: async () => {
      const now = DateTime.unsafeNow()
      const response = await fetch(`${origin}/api/admin/coupons`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({
          name,
          totalQuantity: quantity,
          validFrom: DateTime.formatIso(DateTime.subtract(now, { minutes: 1 })),
          validUntil: DateTime.formatIso(DateTime.add(now, { hours: 1 }))
        })
      })
      if (response.status !== 201) throw new Error(`${response.status} ${await response.text()}`)
      return (await response.json() as { readonly couponId: number }).couponId
    },
    catch: (cause) => new BenchFailure({ message: `creating the coupon failed: ${String(cause)}` })
  })

const out = BenchReport.print

const program = Effect.gen(function*() {
  const bench = yield* BenchConfig
  const run = Date.now().toString(36)
  const serverUrl = yield* Database.url
  const database = `kpipe_coupon_bench_${run}`
  const url = Redacted.make(Database.withDatabase(Redacted.value(serverUrl), database))
  yield* Effect.acquireRelease(
    Database.ensureExists(url),
    () =>
      Database.onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(database)} WITH (FORCE)`).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning(`Dropping the bench database ${database} failed`, cause))
      )
  )
  const topicPrefix = `bench-${run}.`
  const keyPrefix = `kpipe-bench:${run}:coupon:`
  const adminToken = `bench-${run}`
  const port = yield* ServiceProcess.freePort
  const origin = `http://127.0.0.1:${port}`
  const env = {
    DATABASE_URL: Redacted.value(url),
    TOPIC_PREFIX: topicPrefix,
    REDIS_KEY_PREFIX: keyPrefix,
    ADMIN_TOKEN: adminToken,
    PORT: String(port),
    HTTP_REUSE_PORT: "true"
  }
  const provider = ConfigProvider.fromMap(new Map(Object.entries(env))).pipe(
    ConfigProvider.orElse(() => ConfigProvider.fromEnv())
  )
  yield* sales(bench, env, origin).pipe(
    Effect.provide(CouponDatabase.layer.pipe(Layer.provideMerge(CouponConfig.layerFromEnv))),
    Effect.withConfigProvider(provider)
  )
}).pipe(
  Effect.scoped,
  Effect.provide(Layer.mergeAll(Redis.layerFromEnv, Admin.layer.pipe(Layer.provide(KafkaClient.layerFromEnv))))
)

/** With the database migrated: topics, the replicas, the warm-up sale and the measured one. */
const sales = (
  bench: Config.Config.Success<typeof BenchConfig>,
  env: Record<string, string>,
  origin: string
) =>
  Effect.gen(function*() {
    const config = yield* CouponConfig.Config
    const adminToken = Redacted.value(config.adminToken)
    const admin = yield* Admin.Admin
    const redis = yield* Redis.Redis
    yield* TopicAdmin.create([config.topics.requests])
    // The bench leaves nothing behind on the shared Redis and broker.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* redis.use(async (client) => {
          let cursor = "0"
          do {
            const [next, keys] = await client.scan(cursor, "MATCH", `${config.keyPrefix}*`, "COUNT", 1000)
            cursor = next
            if (keys.length > 0) await client.del(...keys)
          } while (cursor !== "0")
        })
        yield* admin.deleteTopics([config.topics.requests.name, config.topics.requests.deadLetter.name])
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logWarning("Removing the bench's Redis keys and topics failed; they stay behind", cause)
        )
      )
    )

    const roles = bench.separateConsumer ? ["api", ...Array(bench.replicas - 1).fill("api"), "consumer"] : Array(
      bench.replicas
    ).fill("api,consumer")
    const replicas = yield* Effect.forEach(
      roles.map((role, replica) => ({ role, replica })),
      ({ replica, role }) =>
        ServiceProcess.start({
          name: "coupon-service",
          entry: main,
          // A consumer-only process serves only health and metrics: on a port of its own, out of the
          // shared port the load goes to.
          env: {
            ...env,
            REPLICA: String(replica),
            COUPON_ROLES: role,
            ...(role === "consumer" ? { PORT: "0", HTTP_REUSE_PORT: "false" } : {})
          },
          execArgv: [...ServiceMain.nodeFlags, ...bench.serviceArgs]
        }).pipe(Effect.map((process) => ({ ...process, role }))),
      { concurrency: "unbounded" }
    )

    const rssNow = () => replicas.map((replica) => BenchMemory.rss(replica.pid))
    const rss: Array<readonly [string, ReadonlyArray<number>]> = [["idle (started)", rssNow()]]

    yield* Effect.gen(function*() {
      if (bench.primePartitions) {
        const coupons = yield* primePartitions(origin, adminToken, config.topics.requests.name)
        yield* out(`every partition of ${config.topics.requests.name} has records (${coupons} one-unit coupons sold)`)
      }
      if (bench.warmup > 0) {
        const warm = yield* createCoupon(origin, adminToken, "warm-up", Math.max(1, Math.round(bench.warmup / 10)))
        yield* sale(origin, warm, 1_000_000, bench.warmup, bench.inFlight)
        yield* out(`warm-up: ${bench.warmup} requests done`)
        rss.push(["after warm-up", rssNow()])
      }

      // At least twice, each on its own coupon: a sale that needs more memory than the one before shows growth.
      const rates: Array<number> = []
      for (let round = 1; round <= bench.sales; round++) {
        const couponId = yield* createCoupon(origin, adminToken, `flash sale ${round}`, bench.quantity)
        const cpuBefore = replicas.map((replica) => BenchCpu.processMs(replica.pid))
        const { accepted, issued, issuedAt, result, settledAt } = yield* sale(
          origin,
          couponId,
          1 + (round - 1) * bench.requests,
          bench.requests,
          bench.inFlight
        )
        const cpuMs = replicas.map((replica, i) => BenchCpu.processMs(replica.pid) - cpuBefore[i]!)
        rss.push([`after sale ${round}`, rssNow()])
        const sorted = [...result.latencies].sort((a, b) => a - b)
        const seconds = result.elapsedMs / 1000
        rates.push(bench.requests / seconds)
        const ms = (value: number) => `${value.toFixed(1)} ms`

        yield* out("")
        yield* out(
          `coupon-service flash sale ${round} of ${bench.sales}: ${bench.requests} requests, quantity ${bench.quantity}, ${bench.inFlight} connections in flight (keep-alive), ${bench.replicas} API process(es) on one port${
            bench.separateConsumer ? " and a consumer process" : " (consumers inside)"
          }`
        )
        yield* out(`  answers           ${JSON.stringify(result.answers)}`)
        yield* out(`  throughput        ${(bench.requests / seconds).toFixed(0)} requests/s (${seconds.toFixed(2)} s)`)
        yield* out(
          `  API latency       p50 ${ms(BenchStats.percentile(sorted, 0.5))}  p90 ${
            ms(BenchStats.percentile(sorted, 0.9))
          }  p99 ${ms(BenchStats.percentile(sorted, 0.99))}  max ${ms(sorted[sorted.length - 1] ?? 0)}`
        )
        for (const kind of Object.keys(result.answers).sort()) {
          const of = result.latencies.filter((_, i) => result.kinds[i] === kind).sort((a, b) => a - b)
          yield* out(
            `    ${kind.padEnd(18)}p50 ${ms(BenchStats.percentile(of, 0.5))}  p99 ${
              ms(BenchStats.percentile(of, 0.99))
            }  max ${ms(of[of.length - 1] ?? 0)}`
          )
        }
        yield* out(
          `  settled           all ${bench.requests} by ${
            ((settledAt - result.startedAt) / 1000).toFixed(2)
          } s (checked after the last answer at ${
            seconds.toFixed(2)
          } s): ${accepted} accepted, the last ISSUED in the database at ${
            ((issuedAt - result.startedAt) / 1000).toFixed(2)
          } s (${issued} rows)`
        )
        yield* out(
          `  CPU               service ${
            cpuMs.map((cpu, i) => `${replicas[i]!.role} ${(cpu / seconds / 10).toFixed(0)} %`).join(" + ")
          } of a core (${
            (cpuMs.reduce((a, b) => a + b, 0) * 1000 / bench.requests).toFixed(0)
          } µs per request, consumer included), load generator ${(result.cpuMs / result.elapsedMs * 100).toFixed(0)} %`
        )
        yield* out(
          `  machine           load average ${
            Os.loadavg().map((n) => n.toFixed(2)).join(" ")
          } on ${Os.cpus().length} cores`
        )
        if (issued !== accepted || accepted !== Math.min(bench.quantity, bench.requests)) {
          return yield* new BenchFailure({
            message: `sale ${round}: expected ${Math.min(bench.quantity, bench.requests)} issued, got ${issued}`
          })
        }
      }

      const peaks = replicas.map((replica) => BenchMemory.peakRss(replica.pid))
      yield* out("")
      yield* out(
        "Resident memory per process (RSS; targets: ≤ 150 MB idle, ≤ 250 MB under load, no growth across sales)"
      )
      yield* BenchReport.table(
        ["when", ...replicas.map((replica, i) => `${replica.role} #${i}`)],
        [
          ...rss.map(([when, values]) => [when, ...values.map(BenchMemory.mb)]),
          ["peak", ...peaks.map(BenchMemory.mb)],
          [
            `sale ${bench.sales} − sale ${bench.sales - 1}`,
            ...rss.at(-1)![1].map((after, i) => `${((after - rss.at(-2)![1][i]!) / 2 ** 20).toFixed(0)} MB`)
          ]
        ],
        "  "
      )
      const exits = yield* Effect.forEach(replicas, (replica) => replica.stop)
      if (exits.some((code) => code !== 0)) {
        return yield* new BenchFailure({ message: `service exit codes ${exits.join(", ")}` })
      }

      // With the service stopped, the same load generator against bare node:http on the same cores.
      const bare = yield* yardstick(bench)
      yield* out("")
      yield* out(
        `Yardstick: bare node:http answering a fixed 202 under the same load generator: ${bare.toFixed(0)} requests/s`
      )
      for (const [i, rate] of rates.entries()) {
        const share = rate / bare
        yield* out(
          `  coupon API sale ${i + 1}: ${rate.toFixed(0)} requests/s = ${
            (share * 100).toFixed(0)
          }% of it (target ≥ 50%: ${share >= 0.5 ? "MET" : "NOT MET"})`
        )
      }
    }).pipe(
      Effect.tapError(() => out(replicas.map((replica) => replica.output()).join("\n")))
    )
  }).pipe(Effect.scoped)

program.pipe(
  Logger.withMinimumLogLevel(LogLevel.Warning),
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`bench failed: ${error.message}\n`)
      process.exitCode = 1
    })
  ),
  Effect.runPromise
)
