import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { configProvider } from "./config.ts"
import { BenchFailure } from "./events.ts"

/**
 * Runs a bench's program to the end with the bench's config provider. The library's logs are quiet
 * unless something goes wrong; `BENCH_LOG_LEVEL=Info` (or `Debug`) shows more. Ctrl-C / SIGTERM
 * interrupt it, which closes every scope (topics deleted, processes stopped, databases dropped); a
 * failure prints its reason and sets the exit code.
 */
export const runBench = <E>(program: Effect.Effect<void, E>) => {
  const main = Effect.gen(function*() {
    const level = yield* Config.logLevel("BENCH_LOG_LEVEL").pipe(Config.withDefault(LogLevel.Warning))
    return yield* program.pipe(Logger.withMinimumLogLevel(level))
  }).pipe(Effect.withConfigProvider(configProvider))

  const fiber = Effect.runFork(main)
  process.once("SIGINT", () => fiber.unsafeInterruptAsFork(fiber.id()))
  process.once("SIGTERM", () => fiber.unsafeInterruptAsFork(fiber.id()))
  fiber.addObserver((exit) => {
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      const reason = Option.isSome(failure) && failure.value instanceof BenchFailure
        ? failure.value.message
        : Cause.isInterruptedOnly(exit.cause)
        ? "interrupted"
        : Cause.pretty(exit.cause)
      process.stderr.write(`\nbench FAILED: ${reason}\n`)
      process.exitCode = 1
    }
    // Everything was released above. A kafkajs consumer interrupted in the middle of a batch can
    // still restart itself afterwards (seen on Ctrl-C); do not let it keep the benchmark alive.
    setTimeout(() => {
      process.stderr.write("bench: still running 5 s after the end (a kafkajs client left behind); exiting\n")
      process.exit()
    }, 5_000).unref()
  })
}
