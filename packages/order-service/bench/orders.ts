// Order benchmark of order-service against the real Kafka and PostgreSQL of this machine, with its
// local SMTP and SMS receivers in this process. The service runs as deployed (`src/main.ts`, each
// role a process of its own, BENCH_PROCESSES) on a fresh database and topic prefix. Requests are
// offered open loop at BENCH_RATE per second for BENCH_SECONDS (each from one of BENCH_USERS users,
// one unit of a product with ample stock), over keep-alive connections. Prints the API latency
// percentiles, the time from an order's commit to its CONFIRMED commit (p50/p99) and to each stage
// on the way, the CPU the service's processes used per order, and checks that every confirmed order
// has exactly one reservation, one e-mail and one SMS.
// Usage: pnpm bench:orders (BENCH_RATE, BENCH_SECONDS, BENCH_USERS, BENCH_PROCESSES, BENCH_CPU_PROF).
import { SqlClient } from "@effect/sql/SqlClient"
import { ServiceMain } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { readFileSync } from "node:fs"
import { Agent, request } from "node:http"
import { fileURLToPath } from "node:url"
import * as MailCatcher from "../src/MailCatcher.ts"
import * as Migrations from "../src/Migrations.ts"
import * as SmsCatcher from "../src/SmsCatcher.ts"

const BenchConfig = Config.all({
  rate: Config.integer("BENCH_RATE").pipe(Config.withDefault(1_000)),
  seconds: Config.number("BENCH_SECONDS").pipe(Config.withDefault(15)),
  users: Config.integer("BENCH_USERS").pipe(Config.withDefault(1_000)),
  // The processes the service runs as, `;`-separated, each its ORDER_ROLES: by default each role a
  // process of its own (the deployment shape; "api,relay,orders,inventory,notifications" is one process).
  processes: Config.string("BENCH_PROCESSES").pipe(
    Config.withDefault("api;relay;inventory;orders;notifications"),
    Config.map((text) => text.split(";").map((roles) => roles.trim()).filter((roles) => roles !== ""))
  ),
  // Node flags for the service's processes after `ServiceMain.nodeFlags` (space-separated), e.g. GC settings.
  nodeFlags: Config.string("BENCH_NODE_FLAGS").pipe(
    Config.withDefault(""),
    Config.map((text) => text.split(" ").filter((flag) => flag !== ""))
  ),
  // A directory: each service process writes a V8 CPU profile there when it stops.
  cpuProfile: Config.option(Config.string("BENCH_CPU_PROF"))
})

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const productId = 4 // seeded with 1,000,000 units

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const ms = (value: number) => `${value.toFixed(1)} ms`

/** CPU time (ms) process `pid` used so far, from /proc. */
const cpuMs = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}

interface Answer {
  /** When it was sent (`performance.now()`). */
  readonly start: number
  readonly latency: number
  readonly status: number
}

/** One POST /api/orders; resolves with when it was sent, its latency in ms and its status. */
const post = (agent: Agent, port: number, userId: number) =>
  new Promise<Answer>((resolve) => {
    const start = performance.now()
    const body = JSON.stringify({ productId, quantity: 1 })
    const req = request({
      agent,
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/api/orders",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), "x-user-id": userId }
    }, (response) => {
      response.resume()
      response.on("end", () => resolve({ start, latency: performance.now() - start, status: response.statusCode ?? 0 }))
    })
    req.on("error", () => resolve({ start, latency: performance.now() - start, status: 0 }))
    req.end(body)
  })

const databaseName = Effect.flatMap(
  SqlClient,
  (sql) => Effect.map(sql<{ db: string }>`SELECT current_database() AS db`, (rows) => rows[0]!.db)
)

/** Until every order is CONFIRMED with both channels sent (at most 120 s). */
const settle = (sql: SqlClient) =>
  Effect.gen(function*() {
    while (true) {
      const [row] = yield* sql<{ open: number }>`
        SELECT count(*)::int AS open FROM orders o
        WHERE o.status <> 'CONFIRMED'
           OR (SELECT count(*) FROM notification_deliveries d WHERE d.order_id = o.order_id AND d.state = 'SENT') < 2`
      if (row!.open === 0) return
      yield* Effect.sleep("200 millis")
    }
  }).pipe(Effect.timeout("120 seconds"), Effect.catchAll(() => Effect.log("not all orders settled within 120 s")))

const program = Effect.gen(function*() {
  const config = yield* BenchConfig
  const mail = yield* MailCatcher.make()
  const sms = yield* SmsCatcher.make({ token: "bench-token" })
  const sql = yield* SqlClient
  const env = {
    DATABASE_URL: Database.withDatabase(Redacted.value(yield* Database.url), yield* databaseName),
    TOPIC_PREFIX: `${TestKafka.uniqueName("bench-orders")}.`,
    PORT: "0",
    SMTP_PORT: String(mail.port),
    SMS_URL: sms.url,
    SMS_TOKEN: "bench-token",
    SMTP_MAX_CONNECTIONS: "20",
    // Each process a pool of its own; the requests and the notifications' deliveries are batched, so few are needed.
    PG_MAX_CONNECTIONS: "10",
    // The stage timings read the published rows (with a retention of 0 the relay deletes them).
    OUTBOX_RETENTION: "1 hour"
  }
  const services = yield* Effect.forEach(config.processes, (roles) =>
    ServiceProcess.start({
      name: "order-service",
      entry,
      execArgv: [
        ...ServiceMain.nodeFlags,
        ...config.nodeFlags,
        ...Option.match(config.cpuProfile, {
          onNone: () => [],
          onSome: (dir) => ["--cpu-prof", `--cpu-prof-dir=${dir}`]
        })
      ],
      env: { ...env, ORDER_ROLES: roles }
    }))
  // Every process listens (a workers-only one for its health and metrics); the API is where the api role runs.
  const port = services.find((_, i) => config.processes[i]!.split(",").includes("api"))?.port
  if (port === undefined) return yield* Effect.dieMessage("no process runs the api role")
  yield* Effect.log(`order-service as ${services.length} process(es): ${config.processes.join(" | ")}`)
  const agent = new Agent({ keepAlive: true, maxSockets: 256 })
  // Warm-up: the consumer groups have joined once an order went all the way through.
  const warm = yield* Effect.tryPromise(() => post(agent, port, 1))
  if (warm.status !== 201) return yield* Effect.dieMessage(`warm-up order answered ${warm.status}`)
  yield* settle(sql)
  yield* sql`TRUNCATE orders, inventory_reservations, notification_deliveries`
  const mailsBefore = mail.received().length
  const smsBefore = sms.received().length
  const total = Math.round(config.rate * config.seconds)
  yield* Effect.log(`offering ${config.rate} orders/s for ${config.seconds} s (${total} orders) to :${port}`)

  const started = performance.now()
  const cpuBefore = { services: services.map((service) => cpuMs(service.pid)), bench: process.cpuUsage() }
  const answers = yield* Effect.tryPromise(() => {
    const pending: Array<Promise<Answer>> = []
    return new Promise<Array<Answer>>((resolve) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * config.rate))
        while (pending.length < due) pending.push(post(agent, port, 1 + (pending.length % config.users)))
        if (pending.length < total) setTimeout(tick, 1)
        else void Promise.all(pending).then(resolve)
      }
      tick()
    })
  })
  const elapsed = (performance.now() - started) / 1000
  const latencies = answers.map((a) => a.latency).sort((a, b) => a - b)
  // The p99 of the requests sent in each second: the processes' start (JIT, pools) against the steady state.
  const bySecond: Array<Array<number>> = []
  for (const answer of answers) (bySecond[Math.floor((answer.start - started) / 1000)] ??= []).push(answer.latency)
  const p99BySecond = bySecond.map((second) => percentile(second.sort((a, b) => a - b), 99).toFixed(0)).join(" ")
  const created = answers.filter((a) => a.status === 201).length

  yield* settle(sql)
  const settled = (performance.now() - started) / 1000
  const serviceCpus = services.map((service, i) => (cpuMs(service.pid) - cpuBefore.services[i]!) / 1000)
  const serviceCpu = serviceCpus.reduce((a, b) => a + b, 0)
  const benchCpu = process.cpuUsage(cpuBefore.bench)

  const confirmLatency = (yield* sql<{ ms: number }>`
    SELECT (extract(epoch FROM updated_at - created_at) * 1000)::float8 AS ms FROM orders WHERE status = 'CONFIRMED'
    ORDER BY 1`).map((row) => row.ms)
  // Where the time goes, from the rows' own timestamps: each stage's p50/p99 since the order's commit.
  const stages = yield* sql<{ stage: string; p50: number; p99: number }>`
    WITH published AS (
      SELECT topic, (payload->>'orderId')::bigint AS order_id, published_at
      FROM kpipe_outbox WHERE status = 'PUBLISHED'
    ), at AS (
      SELECT 'order.created published' AS stage, p.published_at - o.created_at AS d
        FROM orders o JOIN published p ON p.order_id = o.order_id AND p.topic LIKE '%.order.created'
      UNION ALL SELECT 'stock reserved', r.reserved_at - o.created_at
        FROM orders o JOIN inventory_reservations r USING (order_id)
      UNION ALL SELECT 'inventory-reserved published', p.published_at - o.created_at
        FROM orders o JOIN published p ON p.order_id = o.order_id AND p.topic LIKE '%.order.inventory-reserved'
      UNION ALL SELECT 'confirmed', o.updated_at - o.created_at FROM orders o WHERE o.status = 'CONFIRMED'
      UNION ALL SELECT 'order.status published', p.published_at - o.created_at
        FROM orders o JOIN published p ON p.order_id = o.order_id AND p.topic LIKE '%.order.status'
      UNION ALL SELECT 'both notifications sent', max(d.updated_at) - o.created_at
        FROM orders o JOIN notification_deliveries d USING (order_id) GROUP BY o.order_id, o.created_at
    )
    SELECT stage, (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d)) * 1000)::float8 AS p50,
           (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d)) * 1000)::float8 AS p99
    FROM at GROUP BY stage ORDER BY p50`
  const [counts] = yield* sql<{ orders: number; confirmed: number; reservations: number; extra: number }>`
    SELECT (SELECT count(*)::int FROM orders) AS orders,
           (SELECT count(*)::int FROM orders WHERE status = 'CONFIRMED') AS confirmed,
           (SELECT count(*)::int FROM inventory_reservations) AS reservations,
           (SELECT count(*)::int FROM (SELECT order_id FROM inventory_reservations GROUP BY order_id HAVING count(*) > 1) x)
             AS extra`
  const mails = new Map<string, number>()
  const measuredMails = mail.received().slice(mailsBefore)
  const measuredSms = sms.received().slice(smsBefore)
  for (const m of measuredMails) mails.set(m.subject, (mails.get(m.subject) ?? 0) + 1)
  const texts = new Map<string, number>()
  for (const s of measuredSms) texts.set(s.text.split(".")[0]!, (texts.get(s.text.split(".")[0]!) ?? 0) + 1)
  const once = (seen: Map<string, number>) =>
    [...seen.values()].every((n) => n === 1) && seen.size === counts!.confirmed

  process.stdout.write(
    [
      `offered ${total} orders in ${elapsed.toFixed(1)} s (${
        (answers.length / elapsed).toFixed(0)
      } answered/s), ${created} × 201`,
      `API latency p50 ${ms(percentile(latencies, 50))}  p99 ${ms(percentile(latencies, 99))}  max ${
        ms(latencies.at(-1) ?? NaN)
      }`,
      `API latency p99 of each second's requests (ms): ${p99BySecond}`,
      `placed → CONFIRMED p50 ${ms(percentile(confirmLatency, 50))}  p99 ${ms(percentile(confirmLatency, 99))}`,
      `orders ${counts!.orders}, confirmed ${counts!.confirmed}, reservations ${
        counts!.reservations
      } (orders with more than one: ${counts!.extra})`,
      ...stages.map((row) => `  ${row.stage.padEnd(30)} p50 ${ms(row.p50)}  p99 ${ms(row.p99)}`),
      `CPU until settled (${settled.toFixed(1)} s): service ${serviceCpu.toFixed(1)} s (${
        (serviceCpu * 1e3 / Math.max(1, counts!.orders)).toFixed(2)
      } ms/order${
        serviceCpus.length > 1 ? `; ${serviceCpus.map((cpu) => cpu.toFixed(1)).join(" + ")} s` : ""
      }), bench ${((benchCpu.user + benchCpu.system) / 1e6).toFixed(1)} s`,
      `e-mails ${measuredMails.length} (one per confirmed order: ${
        once(mails)
      }), SMS ${measuredSms.length} (one per confirmed order: ${once(texts)})`
    ].join("\n") + "\n"
  )
  agent.destroy()
  yield* Effect.forEach(services, (service) => service.stop, { concurrency: "unbounded" })
})

program.pipe(
  Effect.scoped,
  Effect.provide(Layer.orDie(Database.layerTest(Migrations.all))),
  Effect.runPromise
).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
