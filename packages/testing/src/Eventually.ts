import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** Polls `check` every 100 ms until it holds; fails after `timeout` saying what was awaited. */
export const eventually = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.DurationInput = "30 seconds",
  what = "condition"
) =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (holds) => holds }),
    Effect.asVoid,
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`${what} not reached in time`) })
  )
