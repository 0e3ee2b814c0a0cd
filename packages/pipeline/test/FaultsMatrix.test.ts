import { assert, describe, it } from "@effect/vitest"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { format, recoveryTarget, runScenario, scenarios } from "../faults/scenarios.ts"

// The fault matrix (`pnpm faults`) at CI size: each scenario with a few thousand events and its
// fault shortened to 30 % (the Kafka cut still outlasts kafkajs's reconnects). The scenarios on a
// broker or PostgreSQL cluster of their own start it first (10-40 s for the broker, and as long again
// for its restart), hence their longer timeout.
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
        if (scenario.meetsRecoveryTarget) {
          assert.isAtMost(row.recoverySeconds!, recoveryTarget, "seconds from the fault's end until all was applied")
        }
      }).pipe(Effect.provide(TestLogging.layer)), {
      timeout: scenario.broker === "private" ? 300_000 : 180_000
    })
  }
})
