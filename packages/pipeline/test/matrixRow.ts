import { assert } from "@effect/vitest"
import { TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { format, recoveryTarget, runScenario, type Scenario } from "../faults/scenarios.ts"

/**
 * One row of the fault matrix (`pnpm faults`) at CI size: a few thousand events, the fault shortened
 * to 30 % (the Kafka cut still outlasts kafkajs's reconnects); every invariant 0, converged, and
 * within the recovery target where the scenario claims it.
 */
export const checkRow = (scenario: Scenario) =>
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
  }).pipe(Effect.provide(TestLogging.layer))

/**
 * The scenarios on a broker or PostgreSQL cluster of their own start it first (10-40 s for the broker,
 * and as long again for its restart), hence their longer timeout.
 */
export const rowTimeout = (scenario: Scenario) =>
  scenario.broker !== undefined && scenario.broker !== "shared" ? 300_000 : 180_000
