import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { SqlClient } from "@effect/sql/SqlClient"
import { Admin } from "@kpipe/kafka"
import { DeadLetterMonitor, IdempotentConsumer, OutboxRelay } from "@kpipe/pipeline"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type { IncomingMessage, ServerResponse } from "node:http"
import { Health } from "./Health.ts"

/** The `/metrics` endpoint: every Effect metric of the process in Prometheus' text format. */
export class Prometheus extends Context.Tag("@kpipe/service-kit/Prometheus")<Prometheus, {
  /** Answers a scrape: refreshes the sampled metrics, then writes the exposition. */
  readonly handle: (request: IncomingMessage, response: ServerResponse) => void
}>() {}

/**
 * A metric per combination of label values, its labelled key derived once: `Metric.tagged` derives
 * the key (hashing its name, description and labels) and looks it up in the registry on every
 * update, which made the request-duration histogram the largest part of a fast route's added cost.
 */
const perLabels = <M>(make: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => M, names: ReadonlyArray<string>) => {
  const cache = new Map<string, M>()
  return (...values: ReadonlyArray<string>): M => {
    const id = values.join("\u0000")
    let found = cache.get(id)
    if (found === undefined) {
      found = make(names.map((name, i) => MetricLabel.make(name, values[i]!)))
      cache.set(id, found)
    }
    return found
  }
}

const requestDuration = MetricKey.histogram(
  "http_server_request_duration_seconds",
  MetricBoundaries.fromIterable([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  "HTTP requests by method, route template and status"
)

/** The request-duration histogram of one method, route template (never a raw path) and status. */
export const requestDurationOf = perLabels(
  (labels) => Metric.fromMetricKey(MetricKey.taggedWithLabels(requestDuration, labels)),
  ["method", "route", "status"]
)

const gauge = (name: string, description: string, names: ReadonlyArray<string>) => {
  const key = MetricKey.gauge(name, { description })
  return perLabels((labels) => Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labels)), names)
}

const lagOf = gauge(
  "kpipe_consumer_lag",
  "Records of a partition the group has not committed yet (end offset - committed offset)",
  ["group", "topic", "partition"]
)
const pendingOf = gauge("kpipe_outbox_pending", "Outbox rows waiting to be published, by topic", ["topic"])
const oldestOf = gauge(
  "kpipe_outbox_pending_oldest_seconds",
  "Age of the oldest outbox row waiting to be published, by topic",
  ["topic"]
)

const cpuSeconds = Metric.counter("process_cpu_seconds_total", {
  description: "User and system CPU time of the process",
  incremental: true
})
const residentMemory = Metric.gauge("process_resident_memory_bytes", { description: "Resident set size" })
const heapUsed = Metric.gauge("nodejs_heap_used_bytes", { description: "V8 heap in use" })

const processMetrics = (() => {
  let lastCpu = 0
  return Effect.suspend(() => {
    const usage = process.cpuUsage()
    const cpu = (usage.user + usage.system) / 1e6
    const delta = cpu - lastCpu
    lastCpu = cpu
    const memory = process.memoryUsage()
    return Effect.all([
      Metric.incrementBy(cpuSeconds, delta),
      Metric.set(residentMemory, memory.rss),
      Metric.set(heapUsed, memory.heapUsed)
    ], { discard: true })
  })
})()

const lag = (admin: Admin.Admin["Type"], members: ReturnType<Health["Type"]["members"]>) =>
  Effect.forEach(
    members,
    ({ groupId, topics }) =>
      Effect.forEach(topics, (topic) =>
        Effect.all([admin.committedOffsets(groupId, topic), admin.endOffsets(topic)]).pipe(
          Effect.flatMap(([committed, ends]) =>
            Effect.forEach(ends, ({ high, low, partition }) => {
              const offset = committed.find((c) =>
                c.partition === partition
              )?.offset ?? "-1"
              const from = offset === "-1" ? BigInt(low) : BigInt(offset)
              const behind = BigInt(high) - from
              return Metric.set(lagOf(groupId, topic, String(partition)), Number(behind < 0n ? 0n : behind))
            }, { discard: true })
          )
        ), { discard: true }),
    { discard: true, concurrency: "unbounded" }
  )

const outboxBacklog = (sql: SqlClient, seen: Set<string>) =>
  OutboxRelay.backlogByTopic.pipe(
    Effect.provideService(SqlClient, sql),
    Effect.flatMap((rows) => {
      const zeroed = new Set(seen)
      return Effect.forEach(rows, ({ oldestPendingAge, pending, topic }) => {
        seen.add(topic)
        zeroed.delete(topic)
        return Effect.zipRight(
          Metric.set(pendingOf(topic), pending),
          Metric.set(oldestOf(topic), Duration.toSeconds(oldestPendingAge))
        )
      }, { discard: true }).pipe(
        Effect.zipRight(Effect.forEach(zeroed, (topic) =>
          Effect.zipRight(Metric.set(pendingOf(topic), 0), Metric.set(oldestOf(topic), 0)), { discard: true }))
      )
    })
  )

/** The toolkit's counters, exposed at 0 from the start so that `rate()` and `increase()` see their first events. */
const toolkitCounters = [
  IdempotentConsumer.appliedTotal,
  IdempotentConsumer.duplicatesTotal,
  IdempotentConsumer.retriesTotal,
  IdempotentConsumer.deadLetteredTotal,
  OutboxRelay.publishedTotal,
  OutboxRelay.failedTotal,
  DeadLetterMonitor.failuresTotal
]

/**
 * `/metrics` for the service: the OpenTelemetry SDK reads Effect's metric registry (through
 * `@effect/opentelemetry`) into `@opentelemetry/exporter-prometheus`, whose text is served on the
 * service's own port (no server of its own). Each scrape first samples what is not counted as it
 * happens: process CPU and memory, consumer lag per group and partition (from the broker), and the
 * outbox backlog per topic (where a relay runs). Lag and backlog are skipped when the broker or
 * database does not answer within 2 s, keeping their last values.
 */
export const layer = (serviceName: string): Layer.Layer<Prometheus, never, Health> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
    yield* Effect.forEach(toolkitCounters, (counter) => Metric.incrementBy(counter, 0), { discard: true })
    const health = yield* Health
    const admin = yield* Effect.serviceOption(Admin.Admin)
    const sql = yield* Effect.serviceOption(SqlClient)
    const seenTopics = new Set<string>()
    const sampled = (effect: Effect.Effect<void, unknown>) =>
      effect.pipe(
        Effect.timeout("2 seconds"),
        Effect.catchAllCause((cause) =>
          Effect.logWarning(
            "A metrics sample (consumer lag or outbox backlog) failed; its gauges keep their last values",
            cause
          )
        )
      )
    const refresh = Effect.suspend(() =>
      Effect.all([
        processMetrics,
        Option.match(admin, { onNone: () => Effect.void, onSome: (a) => sampled(lag(a, health.members())) }),
        Option.match(sql, {
          onNone: () => Effect.void,
          onSome: (s) => health.hasRelay() ? sampled(outboxBacklog(s, seenTopics)) : Effect.void
        })
      ], { concurrency: "unbounded", discard: true })
    )
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const prometheus = Prometheus.of({
      handle: (request, response) => {
        runFork(refresh.pipe(Effect.ensuring(Effect.sync(() => exporter.getMetricsRequestHandler(request, response)))))
      }
    })
    return Layer.succeed(Prometheus, prometheus).pipe(
      Layer.merge(NodeSdk.layer(() => ({ resource: { serviceName }, metricReader: exporter })))
    )
  }))
