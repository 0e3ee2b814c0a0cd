import * as Command from "@effect/platform/Command"
import { KafkaClient } from "@kpipe/kafka"
import type { KafkaClientConfig } from "@kpipe/kafka/KafkaClient"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Kafka, logLevel } from "kafkajs"
import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as FaultProxy from "./FaultProxy.ts"
import * as ServiceProcess from "./ServiceProcess.ts"

/** The first broker of `KAFKA_BROKERS` (default the local one). */
export const firstBroker: Effect.Effect<{ readonly host: string; readonly port: number }> = Config.array(
  Config.nonEmptyString(),
  "KAFKA_BROKERS"
).pipe(
  Config.withDefault(["127.0.0.1:9092"]),
  Effect.orElseSucceed(() => ["127.0.0.1:9092"]),
  Effect.map((brokers) => {
    const [host, port] = brokers[0]!.split(":")
    return { host: host!, port: Number(port ?? 9092) }
  })
)

/** A fault proxy in front of the first broker of `KAFKA_BROKERS`; closed with the scope. */
export const proxy: Effect.Effect<FaultProxy.FaultProxy, FaultProxy.FaultProxyError, Scope.Scope> = Effect.flatMap(
  firstBroker,
  FaultProxy.make
)

/**
 * A `KafkaClient` whose every broker connection goes through `proxy` (with `KafkaClient.make`'s
 * defaults), whatever address the broker advertises (a single-node cluster: the proxy's target is that node). Faults then hit this
 * client's producers, consumers and admins only; the broker itself and everyone else's clients
 * are untouched.
 */
export const layerThrough = (
  through: Pick<FaultProxy.FaultProxy, "host" | "port">,
  config: Partial<Omit<KafkaClientConfig, "brokers">> = {}
): Layer.Layer<KafkaClient.KafkaClient> =>
  Layer.sync(KafkaClient.KafkaClient, () => {
    const clientConfig: KafkaClientConfig = {
      brokers: [`${through.host}:${through.port}`],
      clientId: config.clientId ?? "kpipe-faults",
      connectionTimeout: config.connectionTimeout ?? KafkaClient.defaults.connectionTimeout,
      requestTimeout: config.requestTimeout ?? KafkaClient.defaults.requestTimeout,
      retries: config.retries ?? KafkaClient.defaults.retries
    }
    const kafka = new Kafka({
      clientId: clientConfig.clientId,
      brokers: [...clientConfig.brokers],
      connectionTimeout: clientConfig.connectionTimeout!,
      requestTimeout: clientConfig.requestTimeout!,
      retry: { retries: clientConfig.retries!, maxRetryTime: KafkaClient.defaults.maxRetryTime },
      // kafkajs logs every failed attempt; the faults are on purpose, what matters surfaces as KafkaError.
      logLevel: logLevel.NOTHING,
      socketFactory: ({ onConnect }) => {
        const socket = net.connect({ host: through.host, port: through.port }, onConnect)
        socket.setKeepAlive(true, 1_000)
        return socket
      }
    })
    return KafkaClient.KafkaClient.of({ kafka, config: clientConfig })
  })

export class KafkaFaultsError extends Data.TaggedError("KafkaFaultsError")<{
  readonly command: string
  readonly message: string
}> {}

/**
 * A single-node broker of one's own (`scripts/kafka/kafka.sh` on free ports with its own data
 * directory, from the same jars as the shared one), for faults of the broker process itself: the
 * shared broker on 9092 is never killed or frozen.
 */
export interface Broker {
  readonly host: string
  readonly port: number
  /** Its bootstrap address, `host:port`. */
  readonly address: string
  /** The JVM's pid now (it changes with every restart). */
  readonly pid: Effect.Effect<number, KafkaFaultsError>
  /** SIGKILL: a crash, no controlled shutdown. */
  readonly kill: Effect.Effect<void, KafkaFaultsError>
  /** Starts it when it is down; succeeds once it answers a DescribeCluster again. */
  readonly start: Effect.Effect<void, KafkaFaultsError>
  /** SIGSTOP: the process is frozen; its sockets stay open and new connections queue unanswered. */
  readonly freeze: Effect.Effect<void, KafkaFaultsError>
  /** SIGCONT. */
  readonly thaw: Effect.Effect<void, KafkaFaultsError>
  /** Killed now; started again (and answering) when the scope closes, whatever happened meanwhile. */
  readonly crashed: Effect.Effect<void, KafkaFaultsError, Scope.Scope>
  /** Frozen now; thawed when the scope closes, whatever happened meanwhile. */
  readonly frozen: Effect.Effect<void, KafkaFaultsError, Scope.Scope>
  /** A `KafkaClient` on this broker with the production defaults of `KafkaClient.make`. */
  readonly layer: (config?: Partial<Omit<KafkaClientConfig, "brokers">>) => Layer.Layer<KafkaClient.KafkaClient>
}

const text = <E>(stream: Stream.Stream<Uint8Array, E>) => stream.pipe(Stream.decodeText(), Stream.mkString)

const kafkaScript = fileURLToPath(new URL("../../../scripts/kafka/kafka.sh", import.meta.url))

/**
 * Starts a private broker and returns it once it answers; when the scope closes it is thawed,
 * stopped and its data directory removed. Needs what `kafka.sh start` needs (a JDK; Maven once to
 * fetch the jars); a cold start takes 10-40 s on a busy machine.
 */
export const broker: Effect.Effect<Broker, KafkaFaultsError, Scope.Scope> = Effect.gen(function*() {
  const port = yield* ServiceProcess.freePort
  let controllerPort = yield* ServiceProcess.freePort
  while (controllerPort === port) controllerPort = yield* ServiceProcess.freePort
  const runDir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "kpipe-kafka-faults-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const env = {
    KAFKA_PORT: String(port),
    KAFKA_CONTROLLER_PORT: String(controllerPort),
    KAFKA_RUN_DIR: runDir,
    KAFKA_NODES: "1",
    KAFKA_SASL_SSL: "0",
    KAFKA_HEAP_OPTS: "-Xms128m -Xmx384m"
  }
  const run = (...args: ReadonlyArray<string>) =>
    Command.make("bash", kafkaScript, ...args).pipe(
      Command.env(env),
      Command.start,
      Effect.flatMap((child) =>
        Effect.all([text(child.stdout), text(child.stderr), child.exitCode], { concurrency: "unbounded" })
      ),
      Effect.scoped,
      Effect.mapError((error) => new KafkaFaultsError({ command: args.join(" "), message: error.message })),
      Effect.filterOrFail(
        ([, , code]) => code === 0,
        ([out, err, code]) =>
          new KafkaFaultsError({
            command: args.join(" "),
            message: `kafka.sh ${args.join(" ")} (port ${port}, ${runDir}) exited with ${code}: ${(out + err).trim()}`
          })
      ),
      Effect.map(([out]) => out.trim()),
      Effect.provide(ServiceProcess.executorLayer)
    )
  const pid = run("pid", "1").pipe(Effect.map(Number))
  const signal = (name: NodeJS.Signals) => (target: number) =>
    Effect.try({
      try: () => process.kill(target, name),
      catch: (cause) => new KafkaFaultsError({ command: name, message: `${name} to pid ${target}: ${String(cause)}` })
    })
  const kill = run("kill", "1").pipe(Effect.zipRight(Effect.logInfo(`Private broker on ${port} killed (SIGKILL)`)))
  const start = run("start").pipe(Effect.zipRight(Effect.logInfo(`Private broker on ${port} answers`)))
  const freeze = pid.pipe(
    Effect.flatMap(signal("SIGSTOP")),
    Effect.zipRight(Effect.logInfo(`Private broker on ${port} frozen (SIGSTOP)`))
  )
  const thaw = pid.pipe(
    Effect.flatMap(signal("SIGCONT")),
    Effect.zipRight(Effect.logInfo(`Private broker on ${port} thawed (SIGCONT)`))
  )
  yield* Effect.acquireRelease(
    start,
    () =>
      // A frozen JVM ignores SIGTERM until it runs again.
      pid.pipe(Effect.flatMap(signal("SIGCONT")), Effect.ignore, Effect.zipRight(run("stop")), Effect.ignoreLogged)
  )
  const address = `127.0.0.1:${port}`
  return {
    host: "127.0.0.1",
    port,
    address,
    pid,
    kill,
    start,
    freeze,
    thaw,
    crashed: Effect.acquireRelease(kill, () => Effect.orDie(start)),
    frozen: Effect.acquireRelease(freeze, () => Effect.orDie(thaw)),
    layer: (config = {}) => KafkaClient.layer({ clientId: "kpipe-faults", ...config, brokers: [address] })
  } satisfies Broker
})
