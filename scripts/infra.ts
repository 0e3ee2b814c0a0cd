// Brings up what the services need on this machine: the local Kafka broker (unless KAFKA_BROKERS
// names another one), the application database on the DATABASE_URL server, and a Redis check.
// Usage: node scripts/infra.ts start|stop
import { Infrastructure } from "@kpipe/testing"
import * as Effect from "effect/Effect"

const start = Effect.gen(function*() {
  yield* Infrastructure.ensureKafka
  const created = yield* Infrastructure.ensureDatabase
  yield* Infrastructure.checkRedis
  process.stdout.write(
    `infra: Kafka, PostgreSQL${created ? " (database created)" : ""} and Redis are up\n`
  )
})

const command = process.argv[2]
const program = command === "start"
  ? start
  : command === "stop"
  ? Infrastructure.stopLocalKafka
  : Effect.die(new Error("usage: node scripts/infra.ts start|stop"))

Effect.runPromise(program).catch((error: unknown) => {
  process.stderr.write(`infra: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exitCode = 1
})
