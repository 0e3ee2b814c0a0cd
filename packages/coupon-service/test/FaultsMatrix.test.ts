import { assert, describe, it } from "@effect/vitest"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { format, runScenario, scenarios } from "../faults/scenarios.ts"

// The coupon rows of the fault matrix (`faults/matrix.ts`) at CI size.
describe("coupon fault matrix (CI size)", () => {
  for (const scenario of scenarios) {
    it.live(scenario.name, () =>
      Effect.gen(function*() {
        const row = yield* runScenario(scenario, {
          quantity: 60,
          users: 400,
          concurrency: 50,
          recoveryDeadline: "60 seconds"
        })
        yield* Effect.sync(() => process.stdout.write(`${format([row])}\n`))
        assert.isDefined(row.recoverySeconds, "converged after the fault")
        assert.deepStrictEqual([row.lost, row.oversold, row.stuck], [0, 0, 0], "lost, oversold, stuck")
        assert.strictEqual(row.unsold, 0, `every unit was sold once the fault settled (${row.answers})`)
      }).pipe(Effect.provide(TestLogging.layer)), { timeout: 180_000 })
  }
})
