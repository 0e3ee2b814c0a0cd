import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { OrderModels } from "@kpipe/contracts"
import { OrderApi } from "@kpipe/contracts/OrderApi"
import { Ids } from "@kpipe/events"
import { AlertSink } from "@kpipe/pipeline"
import { ConsumerSettings, HttpServe } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { Eventually, TestKafka, TestLogging } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as App from "../src/App.ts"
import * as Config from "../src/Config.ts"
import * as Http from "../src/Http.ts"
import * as MailCatcher from "../src/MailCatcher.ts"
import * as Migrations from "../src/Migrations.ts"
import * as SmsCatcher from "../src/SmsCatcher.ts"

const smsToken = "test-sms-token"

export class Receivers extends Context.Tag("test/Receivers")<Receivers, {
  readonly mail: MailCatcher.MailCatcher
  readonly sms: SmsCatcher.SmsCatcher
  readonly alerts: Array<AlertSink.Alert>
}>() {}

const ReceiversLive = Layer.scoped(
  Receivers,
  Effect.all({ mail: MailCatcher.make(), sms: SmsCatcher.make({ token: smsToken }), alerts: Effect.succeed([]) })
)

const AlertsTest = Layer.effect(
  AlertSink.AlertSink,
  Effect.map(
    Receivers,
    ({ alerts }) => AlertSink.AlertSink.of({ alert: (alert) => Effect.sync(() => alerts.push(alert)) })
  )
)

const ConfigTest = Layer.effect(
  Config.Config,
  Effect.map(Receivers, ({ mail, sms }): Config.Values => ({
    port: 0,
    databaseUrl: Redacted.make("postgres://unused-the-tests-use-Database.layerTest"),
    maxQuantity: 100,
    smtpHost: "127.0.0.1",
    smtpPort: mail.port,
    smtpConnections: 5,
    mailFrom: "orders@kpipe.test",
    smsUrl: new URL(sms.url),
    smsToken: Redacted.make(smsToken),
    smsTimeout: Duration.seconds(10),
    ...Config.smtpDefaults,
    attentionErrorAfter: Duration.seconds(3),
    consumer: {
      ...ConsumerSettings.defaults,
      sessionTimeout: 6_000,
      rebalanceTimeout: 10_000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 100
    }
  }))
)

/**
 * order-service served in process on a fresh database of its own, with topics and consumer groups
 * under a prefix of its own, real SMTP and SMS receivers, and a client pointed at it; `config`
 * overrides the environment (e.g. `PG_MAX_CONNECTIONS`).
 */
export const TestLive = (
  name: string,
  config: Record<string, string> = {},
  /** Where the service logs (instead of the quiet test logging), e.g. a `TestLogging.recording`. */
  logging: Layer.Layer<never> = TestLogging.layer
) =>
  HttpApiBuilder.serve().pipe(
    // `POST /api/orders` through its fast route, as `main.ts` serves it.
    Layer.provideMerge(HttpServe.layerTest(Effect.map(Http.fastRoute, (route) => [route]))),
    Layer.provideMerge(App.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))),
    Layer.provide(AlertsTest),
    Layer.provideMerge(ConfigTest),
    Layer.provideMerge(ReceiversLive),
    Layer.provideMerge(TestKafka.layer),
    Layer.provideMerge(Database.layerTest(Migrations.all)),
    Layer.provide(
      Layer.setConfigProvider(
        ConfigProvider.fromMap(new Map([["TOPIC_PREFIX", `${TestKafka.uniqueName(name)}.`], ...Object.entries(config)]))
          .pipe(
            ConfigProvider.orElse(() => ConfigProvider.fromEnv())
          )
      )
    ),
    Layer.provideMerge(logging)
  )

export const client = HttpApiClient.make(OrderApi)

let nextUser = Math.floor(Math.random() * 1_000_000) * 100

/** A user id no other test uses. */
export const newUser = () => ++nextUser

export const asUser = (userId: number | string) =>
  Effect.map(
    HttpClient.HttpClient,
    HttpClient.mapRequest(HttpClientRequest.setHeader("x-user-id", String(userId)))
  )

/** The typed client, as `userId`. */
export const clientAs = (userId: number) =>
  Effect.flatMap(asUser(userId), (http) => client.pipe(Effect.provideService(HttpClient.HttpClient, http)))

/** A raw request as `userId` (`undefined`: no X-User-Id), with any body text and headers. */
export const raw = (
  method: "GET" | "POST",
  path: string,
  options: { readonly userId?: string | number; readonly body?: string; readonly headers?: Record<string, string> } = {}
) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(method)(path).pipe(HttpClientRequest.setHeaders(options.headers ?? {}))
    if (options.userId !== undefined) {
      request = HttpClientRequest.setHeader(request, "x-user-id", String(options.userId))
    }
    if (options.body !== undefined) request = HttpClientRequest.bodyText(request, options.body, "application/json")
    const response = yield* http.execute(request)
    const text = yield* response.text
    const body = text === "" ? undefined : JSON.parse(text) as Record<string, unknown>
    return { status: response.status, body, tag: body?._tag as string | undefined }
  })

/** A product of this test alone, with `stock` units. */
export const newProduct = (stock: number, price = "10.00") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [row] = yield* sql<{ productId: string }>`
      INSERT INTO products (product_id, name, price)
      VALUES ((SELECT COALESCE(max(product_id), 0) + 1 FROM products), 'test product', ${price})
      RETURNING product_id`
    yield* sql`INSERT INTO inventory (product_id, stock) VALUES (${row!.productId}, ${stock})`
    return Number(row!.productId)
  }).pipe(Effect.retry({ times: 5 }))

export const stockOf = (productId: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ stock: number }>`SELECT stock FROM inventory WHERE product_id = ${productId}`,
      (rows) => rows[0]?.stock
    ))

export const statusOf = (orderId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      Effect.map(sql<{ status: string }>`SELECT status FROM orders WHERE order_id = ${orderId}`, (rows) =>
        rows[0]?.status)
  )

export const eventually = Eventually.eventually

/** Places an order as `userId` through the typed client. */
export const place = (userId: number, productId: number, quantity: number) =>
  Effect.flatMap(clientAs(userId), (client) =>
    client.orders.placeOrder({
      payload: new OrderModels.PlaceOrderRequest({ productId: Ids.ProductId.make(productId), quantity }),
      headers: {}
    }))

/** Waits until the order left PENDING and both channels are SENT; returns it. */
export const settled = (userId: number, orderId: Ids.OrderId) =>
  Effect.gen(function*() {
    const client = yield* clientAs(userId)
    let order = yield* client.orders.getOrder({ path: { orderId } })
    yield* eventually(
      Effect.map(client.orders.getOrder({ path: { orderId } }), (current) => {
        order = current
        return current.status !== "PENDING" && current.notifications.email.state === "SENT" &&
          current.notifications.sms.state === "SENT"
      }),
      "30 seconds",
      `order ${orderId} settled and notified`
    )
    return order
  })
