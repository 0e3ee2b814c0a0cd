import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** Polls `check` every 100 ms until it holds; fails after `timeout` saying what was awaited. */
export const eventually = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.DurationInput = "30 seconds",
  what = "condition"
) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep("100 millis")
  }).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`${what} not reached in time`) }))
