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
