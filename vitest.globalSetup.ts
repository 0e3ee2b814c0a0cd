import { Infrastructure } from "@kpipe/testing"
import * as Effect from "effect/Effect"

const problems = <A, E>(check: Effect.Effect<A, E>) =>
  Effect.match(check, { onFailure: (error) => [String(error)], onSuccess: () => [] })

// Checked once before any test file runs, so a missing component fails the run with what to do,
// never as a skip or a timeout deep inside a test.
export default async function setup() {
  const [kafka, postgres, redis] = await Effect.runPromise(Effect.all([
    Effect.either(Infrastructure.ensureKafka),
    problems(Infrastructure.checkPostgres),
    problems(Infrastructure.checkRedis)
  ], { concurrency: "unbounded" }))
  const startedHere = kafka._tag === "Right" && kafka.right.startedHere
  const stop = async () => {
    if (startedHere) await Effect.runPromise(Infrastructure.stopLocalKafka)
  }
  const failures = [...(kafka._tag === "Left" ? [String(kafka.left)] : []), ...postgres, ...redis]
  if (failures.length > 0) {
    await stop()
    throw new Error(failures.join("\n"))
  }
  return stop
}
