// Brings up what the services need on this machine: the local Kafka broker (unless KAFKA_BROKERS
// names another one), the application database on the DATABASE_URL server, and a Redis check.
// Usage: node scripts/infra.ts start|stop (`--help` lists the commands).
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Infrastructure } from "@kpipe/devtools"
import * as Effect from "effect/Effect"

const start = Command.make("start", {}, () =>
  Effect.gen(function*() {
    yield* Infrastructure.ensureKafka
    const created = yield* Infrastructure.ensureDatabase
    yield* Infrastructure.checkRedis
    process.stdout.write(
      `infra: Kafka, PostgreSQL${created ? " (database created)" : ""} and Redis are up\n`
    )
  })).pipe(
    Command.withDescription(
      "Start the local Kafka broker when none answers (KAFKA_BROKERS names another one that must already run), create the DATABASE_URL database when missing, check Redis (REDIS_URL)."
    )
  )

const stop = Command.make("stop", {}, () => Infrastructure.stopLocalKafka).pipe(
  Command.withDescription("Stop the local Kafka broker (scripts/kafka/kafka.sh stop); PostgreSQL and Redis stay up.")
)

const infra = Command.make(
  "infra",
  {},
  () => Effect.fail(new Error("usage: node scripts/infra.ts start|stop (--help lists them)"))
).pipe(
  Command.withDescription("Local infrastructure for the services: Kafka, PostgreSQL and Redis."),
  Command.withSubcommands([start, stop])
)

const cli = Command.run(infra, { name: "pnpm infra", version: "0.1.0" })

cli(process.argv).pipe(
  // @effect/cli has printed what was wrong with the arguments, and the usage.
  Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => (process.exitCode = 1))),
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`infra: ${error.message}\n`)
      process.exitCode = 1
    })
  ),
  Effect.provide(NodeContext.layer),
  Effect.runPromise
)
