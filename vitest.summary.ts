import * as Fs from "node:fs"
import * as Path from "node:path"
import type { Reporter, TestModule } from "vitest/node"

/** Where the last run's summary is also written, so `.ci/run` can print it after everything else. */
export const summaryFile = Path.join(import.meta.dirname, ".cache", "vitest-summary.txt")

/**
 * Ends every run with the failed tests, one line each, and one plain line,
 * `vitest: N passed, N failed, N skipped`, that CI and scripts can read without parsing vitest's
 * own report.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    const count = { passed: 0, failed: unhandledErrors.length, skipped: 0 }
    const failures: Array<string> = []
    const firstLine = (message: string | undefined) => (message ?? "").split("\n")[0]!.slice(0, 300)
    for (const module of testModules) {
      const tests = [...module.children.allTests()]
      if (module.state() === "failed" && tests.length === 0) {
        count.failed++
        failures.push(
          `FAILED ${Path.relative(process.cwd(), module.moduleId)}: ${firstLine(module.errors()[0]?.message)}`
        )
      }
      for (const test of tests) {
        const result = test.result()
        if (result.state === "passed") count.passed++
        else if (result.state === "failed") {
          count.failed++
          failures.push(
            `FAILED ${Path.relative(process.cwd(), module.moduleId)} > ${test.fullName}: ${
              firstLine(result.errors[0]?.message)
            }`
          )
        } else count.skipped++
      }
    }
    for (const error of unhandledErrors) {
      // Vitest hands over serialized errors: objects with a message, not Error instances.
      const message = typeof error === "object" && error !== null && "message" in error
        ? String(error.message)
        : String(error)
      failures.push(`UNHANDLED ${firstLine(message)}`)
    }
    const summary = [...failures, `vitest: ${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped`]
      .join("\n")
    process.stdout.write(`\n${summary}\n`)
    Fs.mkdirSync(Path.dirname(summaryFile), { recursive: true })
    Fs.writeFileSync(summaryFile, `${summary}\n`)
  }
}
