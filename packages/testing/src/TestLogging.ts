import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"

/**
 * Integration tests provoke failures on purpose, and the code under test logs them. Quiet by
 * default; `TEST_LOG_LEVEL=Debug pnpm test` shows everything.
 */
export const layer: Layer.Layer<never> = Layer.unwrapEffect(
  Config.logLevel("TEST_LOG_LEVEL").pipe(
    Config.withDefault(LogLevel.None),
    Effect.orElseSucceed(() => LogLevel.None),
    Effect.map(Logger.minimumLogLevel)
  )
)

/** One line a `recording` logger kept. */
export interface Logged {
  readonly level: LogLevel.LogLevel["label"]
  readonly message: string
}

/**
 * A logger keeping every line at `minimum` or above in `logged` (the first part of each message),
 * as `layer`: provide it where `layer` above would go, to assert on what the code under test logs.
 */
export const recording = (minimum: LogLevel.LogLevel) => {
  const logged: Array<Logged> = []
  const recorder = Logger.make(({ logLevel, message }) => {
    logged.push({ level: logLevel.label, message: String(Array.isArray(message) ? message[0] : message) })
  })
  return {
    logged,
    layer: Layer.mergeAll(Logger.replace(Logger.defaultLogger, recorder), Logger.minimumLogLevel(minimum))
  }
}
