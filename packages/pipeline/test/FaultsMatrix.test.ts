import { assert, describe, it } from "@effect/vitest"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { format, runScenario, scenarios } from "../faults/scenarios.ts"

// The fault matrix (`pnpm faults`) at CI size: each scenario with a few thousand events and its
// fault shortened to 30 % (the Kafka cut still outlasts kafkajs's reconnects).
describe("fault matrix (CI size)", () => {
  for (const scenario of scenarios) {
    it.live(scenario.name, () =>
      Effect.gen(function*() {
        const row = yield* runScenario(scenario, {
          events: 1_500,
          keys: 40,
          faultScale: 0.3,
          recoveryDeadline: "60 seconds"
        })
        yield* Effect.sync(() => process.stdout.write(`${format([row])}\n`))
        assert.deepStrictEqual(
          [row.lost, row.appliedTwice, row.outOfOrder, row.wronglyDeadLettered, row.stuck],
          [0, 0, 0, 0, 0],
          "lost, applied twice, out of order, wrongly dead-lettered, stuck"
        )
        assert.isDefined(row.recoverySeconds, "converged after the fault")
      }).pipe(Effect.provide(TestLogging.layer)), { timeout: 180_000 })
  }
})
