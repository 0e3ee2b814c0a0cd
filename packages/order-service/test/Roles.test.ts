import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { Database } from "@kpipe/sql"
import { OpsEndpoints, ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
import * as MailCatcher from "../src/MailCatcher.ts"
import * as Migrations from "../src/Migrations.ts"
import * as SmsCatcher from "../src/SmsCatcher.ts"
import { groups } from "../src/Workers.ts"
import { eventually } from "./utils.ts"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const InfraLive = Layer.mergeAll(Database.layerTest(Migrations.all), TestKafka.layer)

describe("ORDER_ROLES splits the API from the workers", () => {
  it.live(
    "an api-only process takes orders without joining a consumer group; a workers-only process confirms them and serves only health and metrics",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const admin = yield* Admin.Admin
        const mail = yield* MailCatcher.make()
        const sms = yield* SmsCatcher.make({ token: "roles-token" })
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const prefix = `${TestKafka.uniqueName("order-roles")}.`
        const env = {
          DATABASE_URL: Database.withDatabase(Redacted.value(yield* Database.url), current!.database),
          TOPIC_PREFIX: prefix,
          PORT: "0",
          SMTP_PORT: String(mail.port),
          SMS_URL: sms.url,
          SMS_TOKEN: "roles-token",
          KAFKA_SESSION_TIMEOUT_MS: "6000",
          KAFKA_HEARTBEAT_INTERVAL_MS: "500",
          KAFKA_REBALANCE_TIMEOUT_MS: "10000",
          KAFKA_MAX_WAIT_MS: "50"
        }
        const start = (roles: string) =>
          ServiceProcess.start({ name: "order-service", entry, env: { ...env, ORDER_ROLES: roles } })
        const workers = yield* start("relay,orders,inventory,notifications")
        const api = yield* start("api")

        const placed = yield* Effect.promise(() =>
          fetch(`${api.baseUrl}/api/orders`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-user-id": "7" },
            body: JSON.stringify({ productId: 1, quantity: 1 })
          }).then(async (response) => ({ status: response.status, body: await response.json() as { orderId: number } }))
        )
        assert.strictEqual(placed.status, 201)
        yield* eventually(
          Effect.map(
            Effect.promise(() =>
              fetch(`${api.baseUrl}/api/orders/${placed.body.orderId}`, { headers: { "x-user-id": "7" } })
                .then((response) => response.json() as Promise<{ status: string }>)
            ),
            (order) => order.status === "CONFIRMED" && mail.received().length === 1 && sms.received().length === 1
          ),
          "60 seconds",
          "the order confirmed and notified by the workers-only process"
        )
        // The workers-only process serves no API, but answers probes and scrapes on its port.
        yield* eventually(
          Effect.map(OpsEndpoints.probe(workers.baseUrl, "/api/orders/1"), OpsEndpoints.servesOperationsOnly),
          "30 seconds",
          "the workers-only process's health and metrics"
        )
        // Only the workers-only process is in the groups: the api-only one never joined.
        for (const group of [groups.inventory, groups.confirmations, groups.notifications]) {
          const described = yield* admin.describeGroup(`${prefix}${group}`)
          assert.strictEqual(described.memberIds.length, 1, group)
        }
        assert.deepStrictEqual(yield* Effect.all([api.stop, workers.stop]), [0, 0])
      }).pipe(Effect.scoped, Effect.provide(InfraLive)),
    { timeout: 120_000 }
  )

  it.live("an unknown role stops the process before it starts anything", () =>
    Effect.gen(function*() {
      const error = yield* ServiceProcess.start({
        name: "order-service",
        entry,
        env: { PORT: "0", ORDER_ROLES: "api,billing" }
      }).pipe(Effect.flip)
      assert.include(error.message, "ORDER_ROLES must list some of api, relay, orders, inventory, notifications")
    }).pipe(Effect.scoped), { timeout: 60_000 })
})
