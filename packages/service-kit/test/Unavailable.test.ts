import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Unavailable } from "@kpipe/service-kit"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

const sqlError = (code: string) =>
  new SqlError({ cause: Object.assign(new Error(`server says ${code}`), { code }), message: "Failed" })

const answered = <E>(self: Effect.Effect<never, E>) => Effect.exit(Unavailable.orServiceUnavailable("Things")(self))

const failedWith = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit)
    ? Cause.failureOption(exit.cause).pipe((o) => o._tag === "Some" ? o.value : undefined)
    : undefined

const diedWith = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Cause.dieOption(exit.cause).pipe((o) => o._tag === "Some" ? o.value : undefined) : undefined

describe("Unavailable.orServiceUnavailable", () => {
  it.effect("the database away (a lost connection, a refusal, a server taking no writes) is a typed 503", () =>
    Effect.gen(function*() {
      for (const code of ["08006", "57P01", "53300", "25006", "ECONNREFUSED"]) {
        const exit = yield* answered(Effect.fail(sqlError(code)))
        assert.strictEqual((failedWith(exit) as { _tag?: string } | undefined)?._tag, "ServiceUnavailable", code)
      }
      // A COMMIT on a lost connection comes as a defect: the outcome is unknown, still a 503.
      const commit = yield* answered(Effect.die(sqlError("08006")))
      assert.include((failedWith(commit) as { message: string }).message, "the outcome is unknown")
    }))

  it.effect("a statement no retry cures (a violated constraint, a wrong statement) is a defect, answered 500", () =>
    Effect.gen(function*() {
      for (const code of ["23505", "42P01", "22P02"]) {
        const error = sqlError(code)
        const exit = yield* answered(Effect.fail(error))
        assert.isUndefined(failedWith(exit), code)
        assert.strictEqual(diedWith(exit), error, code)
      }
      const deferred = sqlError("23503")
      assert.strictEqual(diedWith(yield* answered(Effect.die(deferred))), deferred)
    }))

  it.effect("Redis and Kafka errors stay a 503; domain errors pass through", () =>
    Effect.gen(function*() {
      const redis = yield* answered(Effect.fail({ _tag: "RedisError" as const, message: "READONLY" }))
      assert.strictEqual((failedWith(redis) as { _tag?: string })._tag, "ServiceUnavailable")
      const domain = yield* answered(Effect.fail({ _tag: "NotFound" as const }))
      assert.deepStrictEqual(failedWith(domain), { _tag: "NotFound" })
    }))
})
