import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { backoff, combine } from "../src/internal/relayLoop.ts"

describe("OutboxRelay backoff", () => {
  it.effect("a blocked claim loop tries again at least every 2 s, however long the outage", () =>
    Effect.gen(function*() {
      const delays = Chunk.toReadonlyArray(yield* Schedule.run(Schedule.delays(backoff), 0, Array(40).fill(undefined)))
        .map(Duration.toMillis)
      assert.strictEqual(delays.length, 40)
      assert.isAtMost(delays[0]!, 120)
      assert.isAtMost(Math.max(...delays), 2_000)
      const capped = delays.slice(10)
      assert.isAtLeast(Math.min(...capped), 1_000, "no faster than every second once capped")
      // Not all the same wait: relays that failed together do not claim again together.
      assert.isAbove(new Set(capped).size, 20, `capped waits: ${capped.join(", ")}`)
    }))
})

describe("OutboxRelay state of several claim loops", () => {
  it("one loop backing off is the relay backing off, whichever loop reported last", () => {
    const running = { state: "running" } as const
    const backingOff = { state: "backingOff", detail: "broker away" } as const
    const stopped = { state: "stopped" } as const
    assert.deepStrictEqual(combine([backingOff, running]), backingOff)
    assert.deepStrictEqual(combine([running, backingOff]), backingOff)
    assert.deepStrictEqual(combine([running, running]), running)
    assert.deepStrictEqual(combine([stopped, running]), running)
    assert.deepStrictEqual(combine([stopped, stopped]), stopped)
  })
})
