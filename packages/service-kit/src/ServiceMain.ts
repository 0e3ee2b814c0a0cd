import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { AlertSink } from "@kpipe/pipeline"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HeapCompaction from "./HeapCompaction.ts"
import * as ParentWatch from "./ParentWatch.ts"
import * as Replica from "./Replica.ts"
import * as Telemetry from "./Telemetry.ts"

/** The broker side of a service's infrastructure: `KafkaClient` from `KAFKA_*`, and its `Admin`. */
export const kafka = Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))

/** Where dead-letter alerts go (`ALERT_WEBHOOK_URL`, else the log), over undici. */
export const alerts = AlertSink.layerConfig.pipe(Layer.provideMerge(NodeHttpClient.layerUndici))

/**
 * Node's flags for a service process (`pnpm run services` and the benches start services with
 * them):
 * - young-generation semi-spaces of at most 16 MB. V8 sizes them from the machine's memory (64 MB
 *   each with 24 GB) and grows them to that at start, while every loaded module survives, so an
 *   idle service held 128 MB of young generation. Measured with `pnpm bench:coupons` (2-core VM):
 *   coupon-service resident 307 -> 219 MB idle and ~480 -> ~400 MB after the sales, its CPU within
 *   the run-to-run noise; 8 MB cost ~15 % more CPU in scavenges, and a `--max-old-space-size` low
 *   enough for 250 MB under load cost ~30 % (major collections every few MB).
 * - `--expose-gc`, for the one collection that gives the start's garbage back
 *   (`HeapCompaction.compact`, run by `launch`): ~210 -> ~140 MB resident idle.
 */
export const nodeFlags: ReadonlyArray<string> = ["--max-semi-space-size=16", "--expose-gc"]

/**
 * Runs a service as the process: `app` (server, workers and the infrastructure they need, all
 * provided) with telemetry, its logs annotated with the service name and replica, `<name> ready`
 * logged once everything is up, and a graceful stop on SIGINT / SIGTERM, or once the process that
 * started it is gone (`ParentWatch`, when the dev tooling started it). Before it says so, the
 * start's garbage is collected and its memory returned (`HeapCompaction`, with `--expose-gc`), and
 * again whenever the service has been idle a while (`HeapCompaction.whenIdle`, `HEAP_IDLE_*`).
 */
export const launch = <A, E>(name: string, app: Layer.Layer<A, E>): void =>
  Layer.unwrapEffect(Effect.map(Replica.replica, (replica) =>
    Layer.scopedDiscard(ready(name)).pipe(
      Layer.provide(app),
      Layer.provide(Telemetry.layer(name)),
      Layer.merge(ParentWatch.layer),
      Layer.annotateLogs({ service: name, replica })
    ))).pipe(Layer.launch, NodeRuntime.runMain)

const ready = (name: string) =>
  Effect.gen(function*() {
    const idle = yield* HeapCompaction.idleConfig
    const compacted = yield* HeapCompaction.compact
    yield* Effect.logInfo(`${name} ready`).pipe(Effect.annotateLogs(compacted ?? {}))
    yield* Effect.forkScoped(HeapCompaction.whenIdle(idle))
  })
