// The local 3-node cluster (cluster.sh) and SASL_SSL broker (secure.sh) for the tests that need them:
// started through the scripts when they are down (and stopped again by whoever started them), nodes
// killed and restarted for fault tests. The single-node broker stays with @kpipe/testing's Infrastructure.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Command from "@effect/platform/Command"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export class LocalKafkaError extends Data.TaggedError("LocalKafkaError")<{
  readonly command: string
  readonly message: string
}> {}

export interface Variant {
  readonly name: "cluster" | "secure"
  readonly script: string
  /** The client endpoints: every node of the cluster, or the SASL_SSL listener. */
  readonly brokers: ReadonlyArray<string>
  readonly runDir: string
}

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const port = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isInteger(value) && value > 0 ? value : fallback
}

const clusterPort = port("KAFKA_CLUSTER_PORT", 19092)
export const cluster: Variant = {
  name: "cluster",
  script: here("cluster.sh"),
  brokers: [0, 1, 2].map((i) => `127.0.0.1:${clusterPort + 2 * i}`),
  runDir: process.env["KAFKA_CLUSTER_RUN_DIR"] ?? here("../../.cache/kafka-cluster")
}

const securePort = port("KAFKA_SECURE_PORT", 29092)
export const secure: Variant = {
  name: "secure",
  script: here("secure.sh"),
  brokers: [`127.0.0.1:${securePort}`],
  runDir: process.env["KAFKA_SECURE_RUN_DIR"] ?? here("../../.cache/kafka-secure")
}

/** The secure broker's SSL listener, which authenticates clients by certificate. */
export const secureCertificateBroker = `127.0.0.1:${securePort + 3}`

const hint = (variant: Variant) =>
  `Start it with \`bash scripts/kafka/${variant.name}.sh start\` (needs Java 17, Maven once${
    variant.name === "secure" ? ", openssl" : ""
  }); see its log under ${variant.runDir}.`

const text = <E>(stream: Stream.Stream<Uint8Array, E>) => stream.pipe(Stream.decodeText(), Stream.mkString)

/** Runs `<script> ...args`; fails with its output when it exits non-zero. */
export const run = (variant: Variant, ...args: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const process = yield* Command.start(Command.make("bash", variant.script, ...args))
    const [out, err, code] = yield* Effect.all([text(process.stdout), text(process.stderr), process.exitCode], {
      concurrency: "unbounded"
    })
    const output = out + err
    if (code !== 0) {
      return yield* new LocalKafkaError({
        command: args.join(" "),
        message: `${variant.name}.sh ${args.join(" ")} exited with ${code}: ${output.trim()}\n${hint(variant)}`
      })
    }
    return output
  })).pipe(
    Effect.catchTag("SystemError", "BadArgument", (error) =>
      Effect.fail(new LocalKafkaError({ command: args.join(" "), message: error.message }))),
    Effect.provide(NodeContext.layer)
  )

export const isRunning = (variant: Variant) => Effect.isSuccess(run(variant, "status"))

/**
 * Makes sure every node runs (starting the missing ones); when nothing ran before, stops them again
 * when the scope closes. Fails with the script's output and what to do when they cannot start.
 */
export const ensure = (variant: Variant) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const wasRunning = yield* isRunning(variant)
      yield* run(variant, "start")
      return !wasRunning
    }),
    (startedHere) => startedHere ? Effect.ignore(run(variant, "stop")) : Effect.void
  )

/** SIGKILLs one node (1-based): a crash, no clean shutdown. */
export const kill = (variant: Variant, node: number) => Effect.asVoid(run(variant, "kill", String(node)))

/** Starts the nodes that are down and waits until they are back in the cluster's metadata. */
export const start = (variant: Variant) => Effect.asVoid(run(variant, "start"))

/** The secure broker's generated client settings (`credentials.env`: SASL user and password, PEM files). */
export const credentials = (variant: Variant = secure) =>
  Effect.try({
    try: () =>
      Object.fromEntries(
        readFileSync(`${variant.runDir}/secrets/credentials.env`, "utf8")
          .split("\n")
          .filter((line) => line.includes("="))
          .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)])
      ) as Readonly<Record<string, string>>,
    catch: (error) => new LocalKafkaError({ command: "credentials", message: `${String(error)}\n${hint(variant)}` })
  })
