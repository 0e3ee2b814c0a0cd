import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { CouponApi } from "@kpipe/contracts/CouponApi"
import { CreateCouponRequest } from "@kpipe/contracts/CouponModels"
import { Admin } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import { HttpServe } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { Eventually, FaultProxy, ServiceProcess, TestKafka, TestLogging } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
import * as App from "../src/App.ts"
import { Config, layerFromEnv as ConfigFromEnv } from "../src/Config.ts"
import { CouponStore } from "../src/CouponStore.ts"
import * as Http from "../src/Http.ts"
import * as Migrations from "../src/Migrations.ts"
import { couponKeys, layerRedis, StockReservations } from "../src/StockReservations.ts"

export const adminToken = "test-admin-token"

/**
 * Settings unique to one test (topic prefix, Redis key prefix) and quick ones (retries, rebalances),
 * over the environment.
 */
export const testEnv = (overrides: Record<string, string> = {}) => {
  const name = TestKafka.uniqueName("coupon")
  const env: Record<string, string> = {
    TOPIC_PREFIX: `${name}.`,
    REDIS_KEY_PREFIX: `kpipe-test:${name}:`,
    ADMIN_TOKEN: adminToken,
    REPLICA_HEARTBEAT: "100 millis",
    REPLICA_LEASE: "1 second",
    RECOVERY_TIMEOUT: "20 seconds",
    CONSUMER_RETRY_INITIAL_DELAY: "50 millis",
    KAFKA_SESSION_TIMEOUT_MS: "6000",
    KAFKA_HEARTBEAT_INTERVAL_MS: "500",
    KAFKA_REBALANCE_TIMEOUT_MS: "10000",
    KAFKA_MAX_WAIT_MS: "50",
    ...overrides
  }
  return {
    env,
    provider: ConfigProvider.fromMap(new Map(Object.entries(env))).pipe(
      ConfigProvider.orElse(() => ConfigProvider.fromEnv())
    )
  }
}

/** SCAN + DEL of every key under `pattern`: how these tests make Redis "lose" state, never FLUSHALL. */
export const deleteKeys = (pattern: string) =>
  Effect.flatMap(Redis.Redis, (redis) =>
    redis.use(async (client) => {
      let cursor = "0"
      let deleted = 0
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 500)
        cursor = next
        if (keys.length > 0) deleted += await client.del(...keys)
      } while (cursor !== "0")
      return deleted
    }))

/** Deletes the test's keys when the test ends. */
const RedisCleanup = Layer.scopedDiscard(
  Effect.flatMap(Config, (config) => Effect.addFinalizer(() => Effect.ignore(deleteKeys(`${config.keyPrefix}*`))))
)

const infra = (alerts: Layer.Layer<AlertSink.AlertSink>) =>
  Layer.mergeAll(Database.layerTest(Migrations.all), layerRedis, TestKafka.layer, alerts).pipe(
    Layer.provideMerge(ConfigFromEnv)
  )

export const InfraLive = infra(AlertSink.layerLog)

/** The whole service (consumers included) behind an in-process HTTP server, on a fresh database. */
/** The issue endpoint's fast route in front of the HttpApi, as `main.ts` serves it. */
const FastRoutes = Effect.map(Http.fastRoute, (route) => [route])

export const serviceWith = (alerts: Layer.Layer<AlertSink.AlertSink>) =>
  HttpApiBuilder.serve().pipe(
    Layer.provideMerge(HttpServe.layerTest(FastRoutes)),
    Layer.provideMerge(App.layer),
    Layer.provideMerge(RedisCleanup),
    Layer.provideMerge(infra(alerts)),
    Layer.provide(TestLogging.layer)
  )

export const TestLive = serviceWith(AlertSink.layerLog)

/** `body` on `live`, with the service's Redis behind a fault proxy of its own (`REDIS_URL` points at it). */
export const behindRedisProxy = <A, E, R, ROut, E2, RIn>(
  live: Layer.Layer<ROut, E2, RIn>,
  body: (proxy: FaultProxy.FaultProxy) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const proxy = yield* FaultProxy.make({ host: "127.0.0.1", port: 6379 })
    return yield* body(proxy).pipe(
      Effect.scoped,
      Effect.provide(live),
      Effect.withConfigProvider(testEnv({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` }).provider)
    )
  }).pipe(Effect.scoped)

/** The request path only: no topic creation, no consumers. */
export const RequestPathLive = HttpApiBuilder.serve().pipe(
  Layer.provideMerge(HttpServe.layerTest(FastRoutes)),
  Layer.provideMerge(App.api),
  Layer.provideMerge(RedisCleanup),
  Layer.provideMerge(InfraLive),
  Layer.provide(TestLogging.layer)
)

/** The coupon tables and the Redis reservations alone: no HTTP side, no consumers. */
export const StoresLive = Layer.mergeAll(CouponStore.Default, StockReservations.Default).pipe(
  Layer.provideMerge(RedisCleanup),
  Layer.provideMerge(InfraLive),
  Layer.provide(TestLogging.layer)
)

const mainEntry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** `main.ts` as a process of its own on this test's database: the test's `env`, then `overrides`. */
export const startProcess = (env: Record<string, string>, overrides: Record<string, string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
    const url = Database.withDatabase(Redacted.value(yield* Database.url), current!.database)
    return yield* ServiceProcess.start({
      name: "coupon-service",
      entry: mainEntry,
      env: { ...env, DATABASE_URL: url, PORT: "0", ...overrides }
    })
  })

export const keysOf = (couponId: number) => Effect.map(Config, (config) => couponKeys(config.keyPrefix, couponId))

/** The typed client, as a user (or anonymous) and with the admin token. */
export const client = (options: { readonly userId?: string; readonly admin?: string } = {}) =>
  HttpApiClient.make(CouponApi, {
    transformClient: HttpClient.mapRequest((request) => {
      let next = request
      if (options.userId !== undefined) next = HttpClientRequest.setHeader(next, "x-user-id", options.userId)
      if (options.admin !== undefined) next = HttpClientRequest.bearerToken(next, options.admin)
      return next
    })
  })

export const createCoupon = (
  totalQuantity: number,
  overrides: Partial<{ validFrom: DateTime.Utc; validUntil: DateTime.Utc; name: string }> = {}
) =>
  Effect.gen(function*() {
    const now = yield* DateTime.now
    const admin = yield* client({ admin: adminToken })
    return yield* admin.admin.createCoupon({
      payload: new CreateCouponRequest({
        name: overrides.name ?? "Flash sale",
        totalQuantity,
        validFrom: overrides.validFrom ?? DateTime.subtract(now, { hours: 1 }),
        validUntil: overrides.validUntil ?? DateTime.add(now, { days: 1 })
      })
    })
  })

/** A coupon whose sale ended yesterday and one whose sale starts tomorrow. */
export const createClosedCoupons = Effect.gen(function*() {
  const now = yield* DateTime.now
  const expired = yield* createCoupon(5, {
    validFrom: DateTime.subtract(now, { days: 2 }),
    validUntil: DateTime.subtract(now, { days: 1 })
  })
  const future = yield* createCoupon(5, {
    validFrom: DateTime.add(now, { days: 1 }),
    validUntil: DateTime.add(now, { days: 2 })
  })
  return { expired, future }
})

export interface Answer {
  readonly status: number
  readonly tag: string
  readonly body: Record<string, unknown>
}

/** A raw request, as any client could send it; the answer's `_tag` (or `Accepted`/`Ok`) and status. */
export const send = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.flatMap(HttpClient.HttpClient, (http) =>
    http.execute(request).pipe(
      Effect.flatMap((response) =>
        response.text.pipe(Effect.map((text): Answer => {
          const body = text === "" ? {} : JSON.parse(text) as Record<string, unknown>
          const tag = typeof body["_tag"] === "string"
            ? body["_tag"]
            : response.status === 202
            ? "Accepted"
            : response.status < 300
            ? "Ok"
            : `HTTP ${response.status}`
          return { status: response.status, tag, body }
        }))
      ),
      Effect.scoped
    ))

const withUser = (userId: number | string | undefined) => (request: HttpClientRequest.HttpClientRequest) =>
  userId === undefined ? request : HttpClientRequest.setHeader(request, "x-user-id", String(userId))

export const issue = (couponId: number | string, userId: number | string | undefined) =>
  send(HttpClientRequest.post(`/api/coupons/${couponId}/issue`).pipe(withUser(userId)))

/** A client that honours "recovering" (503) by retrying every 100 ms, as the API asks it to, for up to 30 s. */
export const issueRetrying = (couponId: number, userId: number, seen: Array<Answer>) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 300; attempt++) {
      const answer = yield* issue(couponId, userId)
      seen.push(answer)
      if (answer.tag !== "CouponRecovering") return answer
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.dieMessage(`user ${userId} never got past recovery`)
  })

export const issueStatus = (couponId: number | string, userId: number | string | undefined) =>
  send(HttpClientRequest.get(`/api/coupons/${couponId}/issue-status`).pipe(withUser(userId)))

export const reconciliation = (couponId: number) =>
  send(
    HttpClientRequest.get(`/api/admin/coupons/${couponId}/reconciliation`).pipe(
      HttpClientRequest.bearerToken(adminToken)
    )
  )

export const { eventually } = Eventually

export const issuedCount = (couponId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM user_coupons WHERE coupon_id = ${couponId}`.pipe(
        Effect.map((rows) => rows[0]!.n)
      )
  )

export const issuedUsers = (couponId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ userId: string }>`SELECT user_id::text AS user_id FROM user_coupons WHERE coupon_id = ${couponId}`.pipe(
        Effect.map((rows) => new Set(rows.map((row) => Number(row.userId))))
      )
  )

export const readTopic = (topic: string, count: number) => TestKafka.readTopic(topic, count, "500 millis")

export const tally = (answers: ReadonlyArray<Answer>) => {
  const counts: Record<string, number> = {}
  for (const answer of answers) counts[answer.tag] = (counts[answer.tag] ?? 0) + 1
  return counts
}

/** Offsets `group` has committed on `topic`, summed over its partitions. */
export const committed = (group: string, topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic)).pipe(
    Effect.map((offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0))
  )

export { Admin }
