import { TestInfrastructure } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"

// Once before any test file runs: the infrastructure KPIPE_INFRA chooses (the machine's by default,
// testcontainers on request) is checked or started, and its settings reach every test worker
// through the environment. A missing component fails the run with what to do, never as a skip or
// a timeout deep inside a test. What was started here stops when the run ends.
export default async function setup() {
  const scope = Effect.runSync(Scope.make())
  const close = () => Effect.runPromise(Scope.close(scope, Exit.void))
  const built = await Effect.runPromise(Effect.either(Layer.buildWithScope(TestInfrastructure.layer, scope)))
  if (built._tag === "Left") {
    await close()
    throw new Error(built.left.message)
  }
  Object.assign(process.env, Context.get(built.right, TestInfrastructure.TestInfrastructure).env)
  return close
}
