import { describe, it } from "@effect/vitest"
import { scenarios } from "../faults/scenarios.ts"
import { checkRow, rowTimeout } from "./matrixRow.ts"

// The fault matrix (`pnpm faults`) at CI size. The rows on the 3-node cluster run in Cluster.test.ts,
// the one file that may stop its nodes.
describe("fault matrix (CI size)", () => {
  for (const scenario of scenarios.filter((scenario) => scenario.broker !== "cluster")) {
    it.live(scenario.name, () => checkRow(scenario), { timeout: rowTimeout(scenario) })
  }
})
