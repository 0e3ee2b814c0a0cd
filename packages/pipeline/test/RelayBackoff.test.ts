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
      assert.isAtLeast(delays.slice(10).reduce((a, b) => a + b, 0), 30 * 1_600, "no faster than about every 2 s")
    }))
})
