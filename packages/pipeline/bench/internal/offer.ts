import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import { performance } from "node:perf_hooks"
import { latencyTickMs } from "./config.ts"

/**
 * Open loop: `ticks` runs of `appendOne`, one every `latencyTickMs`, each forked, so a slow commit
 * never delays the next tick. A tick appends what is due by the clock: a timer that fires early
 * (Schedule.fixed then runs twice for one boundary) or late does not change the offered rate.
 * Returns how long the offering took; every append has finished when it returns.
 */
export const offerOpenLoop = <E, R>(ticks: number, appendOne: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const fibers: Array<Fiber.RuntimeFiber<void, E>> = []
    let started = 0
    const start = performance.now()
    const tick = Effect.suspend(() => {
      const due = Math.max(0, Math.min(ticks, Math.floor((performance.now() - start) / latencyTickMs) + 1) - started)
      started += due
      return Effect.forEach(
        Array.from({ length: due }),
        () => Effect.map(Effect.fork(appendOne), (fiber) => void fibers.push(fiber)),
        { discard: true }
      )
    })
    yield* Effect.repeat(tick, { schedule: Schedule.fixed(latencyTickMs), until: () => started >= ticks })
    const offerMs = performance.now() - start
    yield* Fiber.joinAll(fibers)
    return offerMs
  })
