import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Admin, Producer } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, PipelineMigrations, Topic, TopicAdmin } from "@kpipe/pipeline"
import { HttpServe, OpsServer } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { Eventually, TestKafka, TestLogging } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { mkdirSync } from "node:fs"
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

class NoSuchAccount extends Data.TaggedError("NoSuchAccount")<{ readonly account: string }> {
  override get message() {
    return `no account ${this.account}`
  }
}

const KafkaLive = TestKafka.layer
const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(OpsServer.layerConsole),
  Layer.provide(OpsServer.layerApi(Config.succeed(Redacted.make(token)))),
  Layer.provideMerge(HttpServe.server({ port: 0 })),
  Layer.provideMerge(Layer.mergeAll(KafkaLive, DeadLetter.layer.pipe(Layer.provide(KafkaLive)))),
  Layer.provideMerge(Database.layerTest([PipelineMigrations.migrations])),
  Layer.provideMerge(TestLogging.layer)
)

const browser = Effect.acquireRelease(
  Effect.promise(() => chromium.launch({ executablePath, args: ["--no-sandbox"] })),
  (b) => Effect.promise(() => b.close())
)

describe("ops console", () => {
  it.live(
    "a poison record shows as a group with its headers; a dry-run, then a redrive applies it once",
    () =>
      Effect.gen(function*() {
        const topic = Topic.make({
          name: TestKafka.uniqueName("console"),
          partitions: 1,
          retention: "1 hour",
          schema: Charged,
          key: (e) => e.account,
          deadLetter: { name: `${TestKafka.uniqueName("console")}.DLT`, retention: "1 hour" }
        })
        yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
        const broken = new Set(["acc-404"])
        const applied: Array<string> = []
        yield* IdempotentConsumer.run({
          topic,
          groupId: TestKafka.uniqueName("billing"),
          handle: (e: Charged) =>
            broken.has(e.account)
              ? Effect.fail(new NoSuchAccount({ account: e.account }))
              : Effect.sync(() => applied.push(e.eventId)),
          errors: { NoSuchAccount: "deadLetter" },
          kafka: TestKafka.fastConsumer
        })
        const poison = new Charged({ type: "Charged", version: 1, eventId: crypto.randomUUID(), account: "acc-404" })
        const producer = yield* Producer.Producer
        yield* producer.send({
          topic: topic.name,
          messages: [{
            key: "acc-404",
            value: yield* topic.encode(poison),
            headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }
          }]
        })

        const server = yield* HttpServer.HttpServer
        const address = server.address as HttpServer.TcpAddress
        const base = `http://127.0.0.1:${address.port}`
        mkdirSync(screenshots, { recursive: true })
        const page = yield* Effect.flatMap(browser, (b) => Effect.promise(() => b.newPage()))
        const ui = <A>(f: () => Promise<A>) => Effect.promise(f)

        yield* ui(() => page.goto(`${base}/console`))
        yield* ui(() => page.fill("#token", token))
        yield* ui(() => page.click("#connect"))
        // The group appears once the consumer dead-lettered the record (the page refreshes every 5 s).
        yield* Eventually.eventually(Effect.gen(function*() {
          yield* ui(() => page.click("#connect"))
          return (yield* ui(() => page.locator("#groups").textContent()))?.includes("NoSuchAccount") ?? false
        }))
        yield* ui(() => page.screenshot({ path: `${screenshots}console-groups.png`, fullPage: true }))

        yield* ui(() => page.click("#groups tr.pick"))
        yield* ui(() => page.click("#failures tr.pick"))
        const headers = yield* ui(() => page.locator("#headers").textContent())
        assert.include(headers, "traceparent")
        assert.include(yield* ui(() => page.locator("#detail").textContent()), "4bf92f3577b34da6a3ce929d0e0e4736")
        yield* ui(() => page.screenshot({ path: `${screenshots}console-detail.png`, fullPage: true }))

        broken.clear()
        yield* ui(() => page.click("#dry"))
        yield* ui(() => page.waitForSelector("#dryCount"))
        assert.strictEqual(yield* ui(() => page.locator("#dryCount").textContent()), "1")
        yield* ui(() => page.screenshot({ path: `${screenshots}console-dry-run.png`, fullPage: true }))
        yield* ui(() => page.click("#confirm"))

        yield* Eventually.eventually(Effect.sync(() => applied.length === 1))
        yield* Eventually.eventually(Effect.gen(function*() {
          yield* ui(() => page.click("#connect"))
          return (yield* ui(() => page.locator("#operations").textContent()))?.includes("SUCCEEDED") ?? false
        }))
        yield* ui(() => page.screenshot({ path: `${screenshots}console-redriven.png`, fullPage: true }))
        yield* Effect.sleep("1 second")
        assert.deepStrictEqual(applied, [poison.eventId])
      }).pipe(Effect.scoped, Effect.provide(ServerLive)),
    { timeout: 120_000 }
  )
})
