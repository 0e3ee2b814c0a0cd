import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"

/** The variable that turns the watch on; `ServiceProcess` (devtools) sets it in what it starts. */
export const variable = "KPIPE_EXIT_WITH_PARENT"

const enabled = Config.boolean(variable).pipe(
  Config.withDefault(false),
  Config.withDescription(
    "Stop gracefully once the process that started this one is gone, so that a supervisor or test " +
      "killed with SIGKILL leaves no service behind holding its ports and group membership"
  )
)

/**
 * When `KPIPE_EXIT_WITH_PARENT` is on: once the parent process is gone, logs it at Warning and
 * stops this process the graceful way (SIGTERM to itself, so `runMain` runs every finalizer). Linux
 * hands an orphan to init or a subreaper, which is how the parent's death shows: the parent pid changes.
 */
export const layer: Layer.Layer<never, ConfigError.ConfigError> = Layer.scopedDiscard(Effect.gen(function*() {
  if (!(yield* enabled)) return
  const parent = process.ppid
  yield* Effect.sync(() => process.ppid).pipe(
    Effect.repeat({ schedule: Schedule.spaced("1 second"), until: (ppid) => ppid !== parent }),
    Effect.zipRight(
      Effect.logWarning("The process that started this one is gone; stopping").pipe(
        Effect.annotateLogs({ parentPid: parent })
      )
    ),
    Effect.zipRight(Effect.sync(() => process.kill(process.pid, "SIGTERM"))),
    Effect.forkScoped
  )
}))
