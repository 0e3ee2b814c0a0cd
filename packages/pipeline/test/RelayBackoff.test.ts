import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { backoff } from "../src/internal/relayLoop.ts"

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
