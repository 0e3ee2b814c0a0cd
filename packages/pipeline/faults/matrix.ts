// `pnpm faults`: the pipeline's fault matrix. Each scenario pushes FAULTS_EVENTS events (default
// 100,000) through outbox → relay → Kafka → idempotent consumer while its fault is injected and
// prints one row. FAULTS_SCENARIOS picks scenarios by a part of their name (comma-separated);
// FAULTS_SCALE shortens the faults (1 = the nominal durations); FAULTS_RECOVERY_DEADLINE (s);
// FAULTS_LOG_LEVEL; FAULTS_TAILS_AFTER (s): a row resuming later prints its processes' last lines.
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { format, type Row, runScenario, scenarios } from "./scenarios.ts"

const program = Effect.gen(function*() {
  const events = yield* Config.integer("FAULTS_EVENTS").pipe(Config.withDefault(100_000))
  const faultScale = yield* Config.number("FAULTS_SCALE").pipe(Config.withDefault(1))
  const deadline = yield* Config.integer("FAULTS_RECOVERY_DEADLINE").pipe(Config.withDefault(120))
  const only = yield* Config.array(Config.string(), "FAULTS_SCENARIOS").pipe(Config.withDefault([]))
  const slowResume = yield* Config.option(
    Config.integer("FAULTS_TAILS_AFTER").pipe(
      Config.withDescription("Seconds: a row resuming later than this prints its processes' last lines")
    )
  )
  const chosen = scenarios.filter((scenario) =>
    only.length === 0 || only.some((part) => scenario.name.toLowerCase().includes(part.toLowerCase()))
  )
  const rows: Array<Row> = []
  for (const scenario of chosen) {
    process.stdout.write(`… ${scenario.name} (${events} events)\n`)
    const row = yield* runScenario(scenario, {
      events,
      keys: Math.max(8, Math.round(events / 50)),
      faultScale,
      recoveryDeadline: `${deadline} seconds`,
      slowResume: Option.match(slowResume, { onNone: () => undefined, onSome: Duration.seconds })
    })
    rows.push(row)
    process.stdout.write(`${format(rows)}\n\n`)
  }
  const broken = rows.filter((row) =>
    row.lost + row.appliedTwice + row.outOfOrder + row.wronglyDeadLettered + row.stuck > 0 ||
    row.recoverySeconds === undefined
  )
  if (broken.length > 0) {
    return yield* Effect.fail(
      `${broken.length} scenario(s) broke an invariant: ${broken.map((r) => r.scenario).join(", ")}`
    )
  }
})

// The faults make the pipeline log its warnings on purpose; FAULTS_LOG_LEVEL=WARN shows them (Effect's
// level labels: DEBUG, INFO, WARN, ERROR).
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
