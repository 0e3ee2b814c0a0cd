import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServer from "@effect/platform/HttpServer"
import { SqlClient } from "@effect/sql/SqlClient"
import { CommerceApi } from "@kpipe/contracts/CommerceApi"
import { MetricsApi } from "@kpipe/contracts/MetricsApi"
import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { App, Config, Http, MetricsModel, MetricsStore, Migrations } from "@kpipe/metrics-service"
import { AlertSink } from "@kpipe/pipeline"
import { ConsumerSettings, HttpServe } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka, TestLogging } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
import { plain } from "./history.ts"

/** Layers built inside read `TOPIC_PREFIX` = `prefix`, the rest from the environment. */
export const withPrefix = (prefix: string) =>
  Effect.withConfigProvider(
    ConfigProvider.fromMap(new Map([["TOPIC_PREFIX", prefix]])).pipe(
      ConfigProvider.orElse(() => ConfigProvider.fromEnv())
    )
  )

export const adminToken = "test-admin-token"

/** The contract's client; admin calls carry `adminToken`. */
export const metricsClient = (options: { readonly baseUrl?: string } = {}) =>
  HttpApiClient.make(MetricsApi, {
    ...options,
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(adminToken))
  })

/**
 * commerce-service's contract client on `baseUrl`: as user `userId` (`X-User-Id`), or without one
 * as the admin, with the token `startCommerce` gives it (adding products, the totals).
 */
export const commerceClient = (baseUrl: string, userId?: number) =>
  HttpApiClient.make(CommerceApi, {
    baseUrl,
    transformClient: HttpClient.mapRequest(
      userId === undefined
        ? HttpClientRequest.bearerToken(adminToken)
        : HttpClientRequest.setHeader("x-user-id", String(userId))
    )
  })

export const testConfig = (commerceUrl: string, overrides: Partial<Config.Values> = {}) =>
  Config.layer({
    port: 0,
    replica: 0,
    commerceUrl,
    adminToken: Redacted.make(adminToken),
    // startCommerce's ADMIN_TOKEN: the same token, as `pnpm run services` gives every service.
    commerceAdminToken: Redacted.make(adminToken),
    reconciliationSettle: Duration.seconds(10),
    batchSize: 200,
    fetchBytesPerPartition: 1024 * 1024,
    partitionsConcurrency: 1,
    maxRetries: 1,
    kafka: {
      ...ConsumerSettings.defaults,
      sessionTimeout: TestKafka.fastConsumer.sessionTimeout!,
      heartbeatInterval: TestKafka.fastConsumer.heartbeatInterval!,
      rebalanceTimeout: TestKafka.fastConsumer.rebalanceTimeout!,
      maxWaitTimeInMs: TestKafka.fastConsumer.maxWaitTimeInMs!
    },
    ...overrides
  })

/** The base URL of the HttpServer in `context`. */
export const baseUrl = (context: Context.Context<HttpServer.HttpServer>) => {
  const address = Context.get(context, HttpServer.HttpServer).address
  return address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : "http://127.0.0.1"
}

const commerceEntry = fileURLToPath(new URL("../../commerce-service/src/main.ts", import.meta.url))

/**
 * commerce-service as a real process (its own `main.ts`; metrics-service never imports it) on a
 * free port, with a fresh database dropped afterwards (`databaseUrl`), topics under `prefix` and
 * `adminToken` as its `ADMIN_TOKEN` (`commerceClient`).
 */
export const startCommerce = (prefix: string) =>
  Effect.gen(function*() {
    const server = yield* Database.url
    const name = `kpipe_test_commerce_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
    yield* Effect.acquireRelease(
      Database.onServer(server, (sql) => sql`CREATE DATABASE ${sql(name)}`),
      () =>
        Database.onServer(server, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(Effect.ignore)
    )
    const databaseUrl = Database.withDatabase(Redacted.value(server), name)
    const service = yield* ServiceProcess.start({
      name: "commerce-service",
      entry: commerceEntry,
      env: {
        DATABASE_URL: databaseUrl,
        ADMIN_TOKEN: adminToken,
        TOPIC_PREFIX: prefix,
        PORT: "0",
        OUTBOX_POLL_INTERVAL: "200 millis",
        LOG_LEVEL: "Warning"
      }
    })
    return { ...service, databaseUrl }
  })

/** metrics-service, whole (API, consumers, dead-letter monitors), on a free port and a fresh database. */
export const metricsTest = (commerceUrl: string, alerts: Layer.Layer<AlertSink.AlertSink> = AlertSink.layerLog) =>
  HttpApiBuilder.serve().pipe(
    Layer.provide(App.layer),
    Layer.provideMerge(HttpServe.server({ port: 0 })),
    Layer.provideMerge(testConfig(commerceUrl)),
    Layer.provideMerge(alerts),
    Layer.provideMerge(NodeHttpClient.layerUndici),
    Layer.provideMerge(Database.layerTest(Migrations.all)),
    Layer.provideMerge(
      Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(KafkaClient.layerFromEnv))
    ),
    Layer.provideMerge(TestLogging.layer)
  )

const nonZero = (values: ReadonlyArray<unknown>) => values.some((v) => v !== 0 && v !== "0")

/** What the store holds, in the model's terms (zero rows left out). */
export const stored = Effect.gen(function*() {
  const store = yield* MetricsStore.MetricsStore
  const totals = (yield* store.page(0, 1_000_000))
    .filter((m) => nonZero(plain(m)))
    .map((m) => [m.productId as number, plain(m)] as const)
  const buckets = (yield* store.buckets)
    .filter((b) => nonZero(plain(b)))
    .map((b) => [MetricsModel.bucketKey(b.period, b.starts, b.productId), plain(b)] as const)
    .sort((a, b) => a[0].localeCompare(b[0]))
  return { totals, buckets }
})

export const expected = (metrics: MetricsModel.Metrics) => ({
  totals: [...metrics.totals].filter(([, f]) => nonZero(plain(f)))
    .map(([id, f]) => [id, plain(f)] as const)
    .sort((a, b) => a[0] - b[0]),
  buckets: [...metrics.buckets].filter(([, f]) => nonZero(plain(f)))
    .map(([key, f]) => [key, plain(f)] as const)
    .sort((a, b) => a[0].localeCompare(b[0]))
})

/** Events claimed (applied or dead-lettered) by the group. */
export const claimed = (group: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_processed_events WHERE consumer_group = ${group}`
  ).pipe(
    Effect.map((rows) => rows[0]!.n)
  )

export const isCatalog = (event: MetricsModel.Event) =>
  event.type === "LikeAdded" || event.type === "LikeRemoved" || event.type === "ProductViewed"

/** metrics-service's API in process (no consumers) on a fresh database, reconciling against `commerceUrl`. */
export const apiTest = (commerceUrl: string, overrides: Partial<Config.Values> = {}) =>
  HttpApiBuilder.serve().pipe(
    Layer.provide(Http.layer),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(App.domain.pipe(Layer.provide(NodeHttpClient.layerUndici))),
    Layer.provideMerge(testConfig(commerceUrl, overrides)),
    Layer.provideMerge(Database.layerTest(Migrations.all)),
    Layer.provideMerge(Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))),
    Layer.provideMerge(TestLogging.layer)
  )

// Reconciliation points at a port nobody listens on: commerce-service is down.
export const TestLive = apiTest("http://127.0.0.1:9")
