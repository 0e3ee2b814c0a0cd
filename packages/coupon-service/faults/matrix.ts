// The coupon rows of the fault matrix: each scenario runs a sale through API processes of
// coupon-service (`main.ts`) on the real Redis, Kafka and PostgreSQL, injects its fault once a third
// of the stock is accepted, lets a second wave of users buy what the fault left reserved, and prints
// one row. FAULTS_QUANTITY (default 1,000) units for FAULTS_USERS (5,000) distinct users per wave,
// FAULTS_CONCURRENCY (100) requests at a time; FAULTS_SCENARIOS picks scenarios by a part of their
// name (comma-separated); FAULTS_RECOVERY_DEADLINE (s); FAULTS_LOG_LEVEL.
// Usage: pnpm exec node packages/coupon-service/faults/matrix.ts
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { format, type Row, runScenario, scenarios } from "./scenarios.ts"

const program = Effect.gen(function*() {
  const quantity = yield* Config.integer("FAULTS_QUANTITY").pipe(Config.withDefault(1_000))
  const users = yield* Config.integer("FAULTS_USERS").pipe(Config.withDefault(5_000))
  const concurrency = yield* Config.integer("FAULTS_CONCURRENCY").pipe(Config.withDefault(100))
  const deadline = yield* Config.integer("FAULTS_RECOVERY_DEADLINE").pipe(Config.withDefault(120))
  const only = yield* Config.array(Config.string(), "FAULTS_SCENARIOS").pipe(Config.withDefault([]))
  const chosen = scenarios.filter((scenario) =>
    only.length === 0 || only.some((part) => scenario.name.toLowerCase().includes(part.toLowerCase()))
  )
  const rows: Array<Row> = []
  for (const scenario of chosen) {
    process.stdout.write(`… ${scenario.name} (${users} users, ${quantity} coupons)\n`)
    rows.push(yield* runScenario(scenario, { quantity, users, concurrency, recoveryDeadline: `${deadline} seconds` }))
    process.stdout.write(`${format(rows)}\n\n`)
  }
  const broken = rows.filter((row) =>
    row.lost + row.oversold + row.stuck + row.unsold > 0 || row.recoverySeconds === undefined
  )
  if (broken.length > 0) {
    return yield* Effect.fail(
      `${broken.length} scenario(s) broke an invariant: ${broken.map((row) => row.scenario).join(", ")}`
    )
  }
})

const logLevel = Config.logLevel("FAULTS_LOG_LEVEL").pipe(Config.withDefault(LogLevel.None))

Effect.flatMap(logLevel, (level) => Logger.withMinimumLogLevel(program, level)).pipe(
  Effect.runPromise
).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
