// A progress line while a phase runs: rewritten in place on a terminal, one line every few seconds otherwise.
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { performance } from "node:perf_hooks"

const tty = process.stderr.isTTY === true

/** Runs `effect` while printing `label: status()` and the seconds elapsed. */
export const during = <A, E, R>(label: string, status: () => string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const line = () => `  … ${label}: ${status()} (${((performance.now() - start) / 1000).toFixed(1)} s)`
    const printer = Effect.sync(() => process.stderr.write(tty ? `\r\u001b[2K${line()}` : `${line()}\n`)).pipe(
      Effect.repeat(Schedule.spaced(tty ? "250 millis" : "3 seconds")),
      Effect.delay(tty ? "250 millis" : "3 seconds")
    )
    return yield* Effect.raceFirst(effect, Effect.zipRight(printer, Effect.never)).pipe(
      Effect.ensuring(Effect.sync(() => tty && process.stderr.write("\r\u001b[2K")))
    )
  })
