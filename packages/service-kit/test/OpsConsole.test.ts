import * as HttpServer from "@effect/platform/HttpServer"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin, Producer } from "@kpipe/kafka"
import {
  DeadLetter,
  IdempotentConsumer,
  Outbox,
  OutboxRelay,
  PipelineMigrations,
  Topic,
  TopicAdmin
} from "@kpipe/pipeline"
import { OpsGateway, OpsServer } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { Eventually, TestKafka, TestLogging } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { mkdirSync } from "node:fs"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"

// Debian's chromium (`apt-get install -y chromium`); playwright-core downloads no browser.
const executablePath = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium"
const screenshots = fileURLToPath(new URL("../../../.cache/screenshots/", import.meta.url))
const token = "console-admin-token"

class Charged extends Schema.Class<Charged>("Charged")({
  type: Schema.tag("Charged"),
  version: Schema.Literal(1),
  eventId: Schema.String,
  account: Schema.String
}) {}

class CouponIssued extends Schema.Class<CouponIssued>("CouponIssued")({
  type: Schema.tag("CouponIssued"),
  version: Schema.Literal(1),
  eventId: Schema.String,
  coupon: Schema.String,
  note: Schema.String
}) {}

class NoSuchAccount extends Data.TaggedError("NoSuchAccount")<{ readonly account: string }> {
  override get message() {
    return `no account ${this.account}`
  }
}

/**
 * One service's side as a service process has it with `OPS_PORT` set: its own fresh database
 * (pipeline tables), the broker, a dead-letter sink for its consumers, and `OpsServer.layer` on a
 * free port. Built once per service (`Layer.build`), so each has its own database and server.
 */
const ServiceLive = OpsServer.layer({ port: 0, token: Config.succeed(Redacted.make(token)) }).pipe(
  Layer.provideMerge(Layer.mergeAll(TestKafka.layer, DeadLetter.layer.pipe(Layer.provide(TestKafka.layer)))),
  Layer.provideMerge(Database.layerTest([PipelineMigrations.migrations])),
  Layer.provideMerge(TestLogging.layer)
)

const urlOf = (context: Context.Context<HttpServer.HttpServer>) =>
  `http://127.0.0.1:${(Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress).port}`

/** A port nothing listens on: a service whose ops server is down. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolve(port))
    })
  })
)

const browser = Effect.acquireRelease(
  Effect.promise(() => chromium.launch({ executablePath, args: ["--no-sandbox"] })),
  (b) => Effect.promise(() => b.close())
)

describe("ops console over several services (OpsGateway)", () => {
  it.live(
    "every service's failures in one place: a poison record of one is redriven once, a FAILED outbox row of another retried and one skipped",
    () =>
      Effect.gen(function*() {
        const order = yield* Layer.build(ServiceLive)
        const coupon = yield* Layer.build(ServiceLive)
        const inOrder = Effect.provide(order)
        const inCoupon = Effect.provide(coupon)

        // order-service: a consumer dead-letters a charge of an unknown account.
        const charges = Topic.make({
          name: TestKafka.uniqueName("console-charges"),
          partitions: 1,
          retention: "1 hour",
          schema: Charged,
          key: (e) => e.account,
          deadLetter: { name: `${TestKafka.uniqueName("console-charges")}.DLT`, retention: "1 hour" }
        })
        const coupons = Topic.make({
          name: TestKafka.uniqueName("console-coupons"),
          partitions: 1,
          retention: "1 hour",
          schema: CouponIssued,
          key: (e) => e.coupon,
          deadLetter: { name: `${TestKafka.uniqueName("console-coupons")}.DLT`, retention: "1 hour" }
        })
        yield* inOrder(Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([charges, coupons]))))
        const broken = new Set(["acc-404"])
        const applied: Array<string> = []
        yield* inOrder(IdempotentConsumer.run({
          topic: charges,
          groupId: TestKafka.uniqueName("billing"),
          handle: (e: Charged) =>
            broken.has(e.account)
              ? Effect.fail(new NoSuchAccount({ account: e.account }))
              : Effect.sync(() => applied.push(e.eventId)),
          errors: { NoSuchAccount: "deadLetter" },
          kafka: TestKafka.fastConsumer
        }))
        const poison = new Charged({ type: "Charged", version: 1, eventId: crypto.randomUUID(), account: "acc-404" })
        yield* inOrder(Effect.flatMap(Producer.Producer, (producer) =>
          Effect.flatMap(charges.encode(poison), (value) =>
            producer.send({
              topic: charges.name,
              messages: [{
                key: "acc-404",
                value,
                headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }
              }]
            }))))

        // coupon-service: two events the broker refuses (over its 1 MiB record limit) end FAILED in its outbox.
        const tooLarge = (coupon: string) =>
          new CouponIssued({
            type: "CouponIssued",
            version: 1,
            eventId: crypto.randomUUID(),
            coupon,
            note: "x".repeat(2 * 1024 * 1024)
          })
        const [retried, skipped] = [tooLarge("WELCOME"), tooLarge("SPRING")]
        // Behind the row to retry, on its key: held while it is FAILED.
        const behind = new CouponIssued({
          type: "CouponIssued",
          version: 1,
          eventId: crypto.randomUUID(),
          coupon: "WELCOME",
          note: ""
        })
        yield* inCoupon(Outbox.append(coupons, retried, skipped, behind))
        assert.strictEqual(yield* inCoupon(OutboxRelay.drain()), 0)
        const outboxRows = inCoupon(Effect.flatMap(SqlClient, (sql) =>
          sql<{ eventId: string; status: string; attempts: number }>`
            SELECT event_id AS "eventId", status, attempts FROM kpipe_outbox ORDER BY id`.withoutTransform))
        assert.deepStrictEqual(
          (yield* outboxRows).map((r) =>
            r.status
          ),
          ["FAILED", "FAILED", "HELD"]
        )

        const gateway = yield* Layer.build(OpsGateway.layer({
          port: 0,
          token: Redacted.make(token),
          services: [
            { name: "order-service", urls: [urlOf(order)] },
            // The first replica is down: the gateway goes on to the second.
            { name: "coupon-service", urls: [`http://127.0.0.1:${yield* closedPort}`, urlOf(coupon)] },
            { name: "metrics-service", urls: [`http://127.0.0.1:${yield* closedPort}`] }
          ]
        }))
        const base = urlOf(gateway)

        // Nothing passes the gateway without the token; only ops paths of known services are forwarded.
        const status = (path: string, bearer?: string) =>
          Effect.promise(() =>
            fetch(`${base}${path}`, bearer === undefined ? {} : { headers: { authorization: `Bearer ${bearer}` } })
              .then((r) =>
                r.status
              )
          )
        assert.strictEqual(yield* status("/services"), 401)
        assert.strictEqual(yield* status("/services/order-service/ops/health"), 401)
        assert.strictEqual(yield* status("/services/order-service/ops/health", "wrong"), 401)
        assert.strictEqual(yield* status("/services/order-service/ops/health", token), 200)
        assert.strictEqual(yield* status("/services/nobody/ops/health", token), 404)
        assert.strictEqual(yield* status("/services/order-service/docs", token), 404)
        assert.strictEqual(yield* status("/services/metrics-service/ops/health", token), 502)

        mkdirSync(screenshots, { recursive: true })
        const page = yield* Effect.flatMap(browser, (b) => Effect.promise(() => b.newPage()))
        const ui = <A>(f: () => Promise<A>) => Effect.promise(f)
        const text = (selector: string) => ui(() => page.locator(selector).innerText())
        // A table's rows as { column: text } (cells carry data-col; textContent does not depend on layout).
        const rows = (table: string, columns: ReadonlyArray<string>) =>
          Effect.map(
            Effect.forEach(columns, (c) => ui(() => page.locator(`${table} td[data-col='${c}']`).allTextContents())),
            (cells) => cells[0]!.map((_, i) => Object.fromEntries(columns.map((c, j) => [c, cells[j]![i] ?? ""])))
          )

        yield* ui(() => page.goto(`${base}/console`))
        yield* ui(() => page.fill("#token", token))
        yield* ui(() => page.click("#connect"))
        // The group appears once the consumer dead-lettered the record (the page refreshes every 5 s).
        yield* Eventually.eventually(Effect.gen(function*() {
          yield* ui(() => page.click("#connect"))
          return (yield* text("#groups")).includes("NoSuchAccount")
        }))
        assert.deepStrictEqual(yield* rows("#groups", ["service", "errorTag"]), [
          { service: "order-service", errorTag: "NoSuchAccount" }
        ])
        const health = yield* rows("#health", ["service", "state"])
        assert.deepStrictEqual(health.slice(0, 2), [
          { service: "order-service", state: "ok" },
          { service: "coupon-service", state: "ok" }
        ])
        assert.match(health[2]!.state!, /^502 ServiceUnreachable/)
        assert.include(yield* text("#message"), "metrics-service")
        yield* ui(() => page.screenshot({ path: `${screenshots}console-groups.png`, fullPage: true }))

        // The service picker narrows every table to one service.
        yield* ui(() => page.selectOption("#service", "coupon-service"))
        yield* Eventually.eventually(Effect.map(text("#groups"), (t) => !t.includes("NoSuchAccount")))
        assert.notInclude(yield* text("#health"), "order-service")
        yield* ui(() => page.selectOption("#service", ""))
        yield* Eventually.eventually(Effect.map(text("#groups"), (t) => t.includes("NoSuchAccount")))

        yield* ui(() => page.click("#groups tr.pick"))
        yield* ui(() => page.click("#failures tr.pick"))
        yield* ui(() => page.waitForSelector("#headers"))
        assert.include(yield* text("#headers"), "traceparent")
        assert.include(yield* text("#detail"), "order-service")
        assert.include(yield* text("#detail"), "4bf92f3577b34da6a3ce929d0e0e4736")
        yield* ui(() => page.screenshot({ path: `${screenshots}console-detail.png`, fullPage: true }))

        broken.clear()
        yield* ui(() => page.click("#dry"))
        yield* ui(() => page.waitForSelector("#dryCount"))
        assert.strictEqual(yield* text("#dryCount"), "1")
        yield* ui(() => page.screenshot({ path: `${screenshots}console-dry-run.png`, fullPage: true }))
        yield* ui(() => page.click("#confirm"))

        yield* Eventually.eventually(Effect.sync(() => applied.length === 1))
        yield* Eventually.eventually(Effect.gen(function*() {
          yield* ui(() => page.click("#connect"))
          const operations = yield* rows("#operations", ["service", "action", "status"])
          return operations.some((row) =>
            row["service"] === "order-service" && row["action"] === "redrive" && row["status"] === "SUCCEEDED"
          )
        }))
        yield* ui(() => page.screenshot({ path: `${screenshots}console-redriven.png`, fullPage: true }))

        // coupon-service's FAILED outbox rows; retry and skip each ask first, and Cancel changes nothing.
        const outboxRow = (eventId: string) => page.locator("#outbox tr", { hasText: eventId })
        yield* Eventually.eventually(
          Effect.map(text("#outbox"), (t) => t.includes(retried.eventId) && t.includes(skipped.eventId))
        )
        assert.strictEqual(
          yield* ui(() => outboxRow(retried.eventId).locator("td[data-col='service']").textContent()),
          "coupon-service"
        )
        yield* ui(() => outboxRow(retried.eventId).locator("button.retry").click())
        assert.include(yield* text("#outboxQuestion"), "coupon-service")
        assert.include(yield* text("#outboxQuestion"), "WELCOME")
        assert.include(yield* text("#outboxQuestion"), "The 1 later rows of its key wait behind it")
        yield* ui(() => page.click("#outboxCancel"))
        assert.deepStrictEqual((yield* outboxRows).map((r) => r.status), ["FAILED", "FAILED", "HELD"])

        yield* ui(() => outboxRow(retried.eventId).locator("button.retry").click())
        yield* ui(() => page.screenshot({ path: `${screenshots}console-outbox-confirm.png`, fullPage: true }))
        yield* ui(() => page.click("#outboxGo"))
        yield* ui(() => page.waitForSelector("#outboxResult"))
        assert.include(yield* text("#outboxResult"), "1 changed")
        assert.deepStrictEqual((yield* outboxRows).map((r) => r.status), ["PENDING", "FAILED", "PENDING"])

        yield* ui(() => outboxRow(skipped.eventId).locator("button.skip").click())
        assert.include(yield* text("#outboxQuestion"), "SPRING")
        assert.include(yield* text("#outboxQuestion"), "the 0 later rows of its key go on")
        yield* ui(() => page.click("#outboxGo"))
        yield* ui(() => page.waitForSelector("#outboxResult"))
        assert.deepStrictEqual((yield* outboxRows).map((r) => r.status), ["PENDING", "SKIPPED", "PENDING"])
        yield* Eventually.eventually(
          Effect.map(text("#outbox"), (t) => !t.includes(retried.eventId) && !t.includes(skipped.eventId))
        )
        yield* Eventually.eventually(Effect.map(
          rows("#operations", ["service", "action", "status"]),
          (operations) =>
            ["outbox-retry", "outbox-skip"].every((action) =>
              operations.some((row) =>
                row["service"] === "coupon-service" && row["action"] === action && row["status"] === "SUCCEEDED"
              )
            )
        ))
        yield* ui(() => page.screenshot({ path: `${screenshots}console-outbox-done.png`, fullPage: true }))

        // The retried row really goes out again: the relay sends it (and the broker refuses it once more).
        yield* inCoupon(OutboxRelay.drain())
        const [afterRetry] = yield* outboxRows
        assert.deepStrictEqual([afterRetry!.status, afterRetry!.attempts], ["FAILED", 2])

        yield* Effect.sleep("1 second")
        assert.deepStrictEqual(applied, [poison.eventId])
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
