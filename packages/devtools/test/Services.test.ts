import * as Command from "@effect/platform/Command"
import { assert, describe, it } from "@effect/vitest"
import { ServiceProcess } from "@kpipe/devtools"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

// `pnpm run services` as a user runs it: every seed service as its own process, scraped by a real
// Prometheus (Debian's package; `.ci/run` installs it), then one replica killed with SIGKILL and
// Ctrl-C at the end.

const script = fileURLToPath(new URL("../../../scripts/services.ts", import.meta.url))
const run = Date.now().toString(36)
const adminToken = `services-test-${run}`
const opsOffset = 100

const get = (url: string) =>
  Effect.tryPromise(async () => {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) })
    return { status: response.status, body: await response.text() }
  })

const post = (url: string, body: unknown) =>
  Effect.tryPromise(() =>
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000)
    }).then((response) => response.status)
  )

/** `effect` retried until it succeeds; past `timeout`, a failure that names `what` and the last error. */
const eventually = <A, E>(
  what: string,
  effect: Effect.Effect<A, E>,
  timeout: Duration.DurationInput = "60 seconds"
) => {
  let last: unknown = undefined
  return effect.pipe(
    Effect.tapError((error) => Effect.sync(() => (last = error))),
    Effect.retry(Schedule.spaced("500 millis")),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`${what}: not reached in ${Duration.format(timeout)} (last: ${JSON.stringify(last)})`)
    })
  )
}

/** A Prometheus scraping `targets` every second, for the life of the scope. */
const prometheus = (targets: ReadonlyArray<{ readonly job: string; readonly port: number }>) =>
  Effect.gen(function*() {
    const port = yield* ServiceProcess.freePort
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "kpipe-prometheus-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const config = [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "scrape_configs:",
      ...targets.flatMap(({ job, port }) => [
        `  - job_name: ${job}`,
        "    static_configs:",
        `      - targets: ["127.0.0.1:${port}"]`
      ])
    ].join("\n")
    writeFileSync(join(dir, "prometheus.yml"), `${config}\n`)
    // Command's scope ends it (SIGTERM to its process group, then waits).
    yield* Command.start(Command.make(
      "prometheus",
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`
    ))
    const query = (expression: string) =>
      get(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expression)}`).pipe(
        Effect.map(({ body }) =>
          (JSON.parse(body) as {
            data: { result: ReadonlyArray<{ metric: Record<string, string>; value: [number, string] }> }
          })
            .data.result.map((sample) => ({ metric: sample.metric, value: Number(sample.value[1]) }))
        )
      )
    return { query }
  })

describe("pnpm run services", () => {
  it.live(
    "serves readiness and Prometheus metrics a real Prometheus scrapes, restarts a killed replica, stops once on Ctrl-C",
    () =>
      Effect.gen(function*() {
        // One block for every port, the ops ports (port + 100) included.
        const base = yield* ServiceProcess.freePortBlock(opsOffset + 11)
        const ports = {
          AUTH_PORT: base,
          DDAY_PORT: base + 1,
          ACCOUNT_PORT: base + 2, // and base + 3, the second replica
          COUPON_PORT: base + 4,
          ORDER_PORT: base + 5,
          SMTP_PORT: base + 6,
          SMS_PORT: base + 7,
          COMMERCE_PORT: base + 8,
          METRICS_PORT: base + 9,
          OPS_CONSOLE_PORT: base + opsOffset + 10
        }
        const services = yield* ServiceProcess.spawn({
          name: "services",
          entry: script,
          env: {
            ...Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, String(port)])),
            ACCOUNT_REPLICAS: "2",
            OPS_PORT_OFFSET: String(opsOffset),
            ADMIN_TOKEN: adminToken,
            TOPIC_PREFIX: `services-test-${run}-`,
            DATABASE_PREFIX: `kpipe_services_test_`
          },
          ready: "Ctrl-C stops everything",
          readyTimeout: "240 seconds"
        })
        // Should the test fail midway, the script still stops its services (they run in process groups of their own).
        yield* Effect.addFinalizer(() =>
          services.signal("SIGINT").pipe(
            Effect.zipRight(Effect.interruptible(services.exitStatus)),
            Effect.timeout("60 seconds"),
            Effect.ignore
          )
        )
        yield* services.awaitReady
        const targets = [
          { job: "auth-service", port: ports.AUTH_PORT },
          { job: "d-day-service", port: ports.DDAY_PORT },
          { job: "account-service-1", port: ports.ACCOUNT_PORT },
          { job: "account-service-2", port: ports.ACCOUNT_PORT + 1 },
          { job: "coupon-service", port: ports.COUPON_PORT },
          { job: "order-service", port: ports.ORDER_PORT }
        ]
        // The status block, and every line a service printed about its state, when one is not ready.
        const statusBlock = /\nservices:\n[^]*?Ctrl-C/.exec(services.output())?.[0] ?? services.output().slice(-4000)
        for (const { job } of targets) {
          const said = services.lines().filter((line) =>
            line.includes(job) && /ready|exited|restart|stopped|Error|crash/.test(line)
          )
          assert.match(
            statusBlock,
            new RegExp(`${job} +pid \\d+ +ready \\(\\d+ checks\\)`),
            `${job} not ready:\n${statusBlock}\n${said.slice(-20).join("\n")}`
          )
        }

        // Every service: ready with its checks, and an exposition promtool accepts.
        for (const { job, port } of targets) {
          const ready = yield* get(`http://127.0.0.1:${port}/health/ready`)
          assert.strictEqual(ready.status, 200, `${job}: ${ready.body}`)
          const names = (JSON.parse(ready.body) as { checks: ReadonlyArray<{ name: string }> }).checks.map((c) =>
            c.name
          )
          assert.includeMembers(names, ["database", "broker"], job)
          assert.isTrue(
            names.some((name) => name.startsWith("consumer ") || name === "outbox relay"),
            `${job}: ${names.join(", ")}`
          )
          const metrics = yield* get(`http://127.0.0.1:${port}/metrics`)
          assert.strictEqual(metrics.status, 200)
          const promtool = Command.make("promtool", "check", "metrics").pipe(Command.feed(metrics.body))
          const [code, problems] = yield* Effect.all([Command.exitCode(promtool), Command.string(promtool)])
          assert.strictEqual(code, 0, `${job}: promtool: ${problems}`)
          assert.include(metrics.body, "process_cpu_seconds_total")
        }
        const coupon = yield* get(`http://127.0.0.1:${ports.COUPON_PORT}/health/ready`)
        assert.include(coupon.body, `"name":"redis","ok":true`)

        // One ops console over every service: the gateway forwards to each one's ops API, behind the admin token.
        const gateway = `http://127.0.0.1:${ports.OPS_CONSOLE_PORT}`
        assert.include(services.output(), `${gateway}/console`)
        for (const name of ["auth-service", "d-day-service", "account-service", "coupon-service", "order-service"]) {
          const status = (token: string) =>
            Effect.tryPromise(() =>
              fetch(`${gateway}/services/${name}/ops/health`, { headers: { authorization: `Bearer ${token}` } })
                .then((response) => response.status)
            )
          assert.deepStrictEqual([yield* status(adminToken), yield* status("wrong")], [200, 401], name)
        }

        const { query } = yield* prometheus(targets)
        const up = yield* eventually(
          "every target up in Prometheus",
          query("up == 1").pipe(Effect.filterOrFail((samples) => samples.length === targets.length))
        )
        assert.sameMembers(up.map((sample) => sample.metric.job!), targets.map((t) => t.job))

        // A burst of sign-ins: auth-service's relay publishes their events (its counter rises as
        // Prometheus sees it), account-service's consumers report their lag per partition.
        const before = yield* eventually(
          "auth-service's published counter scraped",
          query(`kpipe_outbox_published_total{job="auth-service"}`).pipe(
            Effect.filterOrFail((samples) => samples.length === 1)
          )
        )
        const burst = 30
        const statuses = yield* Effect.forEach(
          Array.from({ length: burst }, (_, i) => i),
          (i) =>
            post(`http://127.0.0.1:${ports.AUTH_PORT}/api/auth/sign-in`, {
              provider: "google",
              subject: `services-test-${run}-${i}`,
              nickname: `member${i}`
            }),
          { concurrency: 10 }
        )
        assert.isTrue(statuses.every((status) => status === 200), statuses.join(","))
        yield* eventually(
          "the burst's events published",
          query(`kpipe_outbox_published_total{job="auth-service"}`).pipe(
            Effect.filterOrFail((samples) => samples[0] !== undefined && samples[0].value >= before[0]!.value + burst)
          )
        )
        const lag = yield* eventually(
          "d-day-service's consumer lag scraped",
          query(`kpipe_consumer_lag{job="d-day-service"}`).pipe(Effect.filterOrFail((samples) => samples.length > 0))
        )
        assert.isTrue(lag.every((sample) => sample.metric.partition !== undefined && sample.metric.group !== undefined))
        const routes = yield* eventually(
          "the sign-in route's request count scraped",
          query(`http_server_request_duration_seconds_count{job="auth-service",route="/api/auth/sign-in",status="200"}`)
            .pipe(Effect.filterOrFail((samples) => samples.length === 1 && samples[0]!.value >= burst))
        )
        assert.strictEqual(routes[0]!.metric.method, "POST")

        // SIGKILL one account-service replica: restarted, counted, ready again.
        const pid = Number(/account-service-1 +pid (\d+)/.exec(services.output())![1])
        process.kill(pid, "SIGKILL")
        yield* eventually(
          "account-service-1 restarted and ready",
          Effect.suspend(() =>
            /account-service-1.*ready \(\d+ checks\) again \(restart 1, pid \d+\)/.test(services.output())
              ? Effect.void
              : Effect.fail("not restarted yet")
          ),
          "120 seconds"
        )
        assert.match(services.output(), /account-service-1.*exited unexpectedly \(exit (SIGKILL|null)\); restart 1/)
        const again = yield* get(`http://127.0.0.1:${ports.ACCOUNT_PORT}/health/ready`)
        assert.strictEqual(again.status, 200)
        yield* eventually(
          "the status lines shown again",
          Effect.suspend(() =>
            /account-service-1 +pid \d+ +ready \(\d+ checks\) +restarts 1/.test(services.output())
              ? Effect.void
              : Effect.fail("status lines not shown again")
          )
        )

        // Ctrl-C with two services hung (frozen with SIGSTOP, deaf to SIGTERM): each is killed after
        // 20 s, both in the same 20 s, and every other service stops once, gracefully.
        // (Two alone in their consumer groups: a frozen member would also hold up its peers' departure.)
        const hung = ["d-day-service", "coupon-service"]
        for (const job of hung) {
          process.kill(Number(new RegExp(`${job} +pid (\\d+)`).exec(services.output())![1]), "SIGSTOP")
        }
        const stopping = Date.now()
        yield* services.signal("SIGINT")
        yield* services.exitStatus.pipe(
          Effect.timeoutFail({
            duration: "60 seconds",
            onTimeout: () => new Error(`not stopped 60 s after Ctrl-C:\n${services.lines().slice(-40).join("\n")}`)
          })
        )
        const stopSeconds = (Date.now() - stopping) / 1000
        assert.isBelow(stopSeconds, 35, "the hung services are waited for side by side, not one after the other")
        for (const { job } of targets) {
          const stops = services.lines().filter((line) => line.includes(job) && / stopped \(exit |; killed/.test(line))
          assert.strictEqual(stops.length, 1, `${job}: ${stops.join("\n")}`)
          assert.match(
            stops[0]!,
            hung.includes(job) ? /did not stop within 20 s; killed/ : /stopped \(exit 0\)/,
            services.lines().filter((line) => line.includes(job)).slice(-30).join("\n")
          )
        }
      }).pipe(Effect.scoped, Effect.provide(ServiceProcess.executorLayer)),
    { timeout: 480_000 }
  )
})
