import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { App, Config, Http, Migrations, Workers } from "@kpipe/metrics-service"
import { AlertSink, Topic } from "@kpipe/pipeline"
import { HttpServe } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { RawHttp, TestKafka, TestLogging } from "@kpipe/testing"
import * as BigDecimal from "effect/BigDecimal"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import {
  adminToken,
  apiTest,
  baseUrl,
  commerceClient,
  metricsClient,
  startCommerce,
  testConfig,
  withPrefix
} from "./utils.ts"

/** metrics-service's API and domain with no consumer running yet: what it applies comes later. */
const apiOnly = (commerceUrl: string) =>
  HttpApiBuilder.serve().pipe(
    Layer.provide(Http.layer),
    Layer.provideMerge(App.domain),
    Layer.provideMerge(HttpServe.server({ port: 0 })),
    Layer.provideMerge(testConfig(commerceUrl, { reconciliationSettle: Duration.seconds(45) })),
    Layer.provideMerge(AlertSink.layerLog),
    Layer.provideMerge(NodeHttpClient.layerUndici),
    Layer.provideMerge(Database.layerTest(Migrations.all)),
    Layer.provideMerge(Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))),
    Layer.provideMerge(TestLogging.layer)
  )

describe("Reconciliation", () => {
  it.live(
    "events in flight at the first read are not drift: it waits for the consumers to catch up and reads again",
    () =>
      Effect.gen(function*() {
        const prefix = `${TestKafka.uniqueName("s3inflight")}.`
        const commerce = yield* startCommerce(prefix)
        const shop = yield* commerceClient(commerce.baseUrl)
        const user = (id: number) => commerceClient(commerce.baseUrl, id)
        const mug = yield* shop.admin.createProduct({
          payload: { name: "mug", price: BigDecimal.unsafeFromString("12.5") }
        })
        const path = { path: { productId: mug.productId } }
        yield* (yield* user(1)).likes.like(path)
        yield* (yield* user(2)).likes.like(path)
        for (let i = 0; i < 3; i++) yield* shop.catalog.view({ ...path, headers: {} })
        // On the topic, and not applied: metrics-service's consumers have not started.
        yield* TestKafka.readTopic(Topic.prefixed(SeedTopics.catalogEvents, prefix).name, 5)

        yield* Effect.gen(function*() {
          const context = yield* Layer.build(apiOnly(commerce.baseUrl))
          const metrics = yield* metricsClient({ baseUrl: baseUrl(context) })
          // The consumers start while the reconciliation waits after its first read.
          yield* Layer.build(Workers.layer).pipe(
            Effect.provide(context),
            Effect.delay("500 millis"),
            Effect.forkScoped
          )
          const report = yield* metrics.admin.reconcile()
          assert.deepStrictEqual(report.drift, [])
          assert.isTrue(report.consistent)
          assert.strictEqual(report.inFlightProducts, 1)
          assert.isTrue(report.consumersCaughtUp)
          assert.strictEqual(report.checkedProducts, 1)
          const figures = yield* metrics.metrics.productMetrics(path)
          assert.deepStrictEqual([figures.likes, figures.views], [2, 3])
        }).pipe(withPrefix(prefix), Effect.scoped)
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.provide(TestKafka.layer)),
    { timeout: 120_000 }
  )

  it.live(
    "commerce-service refusing COMMERCE_ADMIN_TOKEN is a 503 naming it, not a plain retry",
    () =>
      Effect.gen(function*() {
        const commerce = yield* startCommerce(`${TestKafka.uniqueName("s3token")}.`)
        const shop = yield* commerceClient(commerce.baseUrl)
        yield* shop.admin.createProduct({ payload: { name: "mug", price: BigDecimal.unsafeFromString("12.5") } })
        yield* Effect.gen(function*() {
          const answer = yield* RawHttp.request("POST", "/api/metrics/reconciliation", undefined, {
            authorization: `Bearer ${adminToken}`
          })
          assert.deepStrictEqual([answer.status, answer.tag], [503, "ServiceUnavailable"], JSON.stringify(answer.body))
          const message = (answer.body as { readonly message: string }).message
          assert.include(message, "COMMERCE_ADMIN_TOKEN")
          assert.notInclude(message, "retry.")
        }).pipe(Effect.provide(apiTest(commerce.baseUrl, { commerceAdminToken: Redacted.make("wrong-token") })))
        // The right one (the same as the service's ADMIN_TOKEN here) reads the totals.
        yield* Effect.gen(function*() {
          const report = yield* (yield* metricsClient()).admin.reconcile()
          assert.strictEqual(report.checkedProducts, 1)
        }).pipe(Effect.provide(apiTest(commerce.baseUrl)))
      }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici), Effect.provide(TestKafka.layer)),
    { timeout: 120_000 }
  )

  it.effect("COMMERCE_ADMIN_TOKEN defaults to ADMIN_TOKEN (unset or empty)", () =>
    Effect.gen(function*() {
      const read = (entries: ReadonlyArray<readonly [string, string]>) =>
        Effect.map(
          Effect.withConfigProvider(Config.config, ConfigProvider.fromMap(new Map(entries))),
          (values) => Redacted.value(values.commerceAdminToken)
        )
      assert.strictEqual(yield* read([["ADMIN_TOKEN", "own"]]), "own")
      assert.strictEqual(yield* read([["ADMIN_TOKEN", "own"], ["COMMERCE_ADMIN_TOKEN", ""]]), "own")
      assert.strictEqual(yield* read([["ADMIN_TOKEN", "own"], ["COMMERCE_ADMIN_TOKEN", "theirs"]]), "theirs")
    }))
})
