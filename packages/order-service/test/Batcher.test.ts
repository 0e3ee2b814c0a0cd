import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Batcher from "../src/internal/batcher.ts"

describe("Batcher (group commit of concurrent calls)", () => {
  it.live("the calls made while a run is under way go to the next run together, each gets its own answer", () =>
    Effect.gen(function*() {
      const batches: Array<ReadonlyArray<number>> = []
      const release = yield* Deferred.make<void>()
      const call = yield* Batcher.make(
        (items: ReadonlyArray<number>) =>
          Effect.gen(function*() {
            batches.push(items)
            // The first run waits, so the calls meanwhile queue up behind it.
            if (batches.length === 1) yield* Deferred.await(release)
            return items.map((item) => item * 10)
          }),
        { maxBatch: 100, workers: 1 }
      )
      const first = yield* Effect.fork(call(1))
      yield* Effect.sleep("20 millis")
      const rest = yield* Effect.fork(Effect.forEach([2, 3, 4, 5], call, { concurrency: "unbounded" }))
      yield* Effect.sleep("20 millis")
      yield* Deferred.succeed(release, void 0)
      assert.strictEqual(yield* Fiber.join(first), 10)
      assert.deepStrictEqual(yield* Fiber.join(rest), [20, 30, 40, 50])
      assert.deepStrictEqual(batches, [[1], [2, 3, 4, 5]])
    }).pipe(Effect.scoped))

  it.live("a batch is at most maxBatch calls; a failing run fails its own calls only, and the loop goes on", () =>
    Effect.gen(function*() {
      const sizes: Array<number> = []
      const call = yield* Batcher.make(
        (items: ReadonlyArray<number>) => {
          sizes.push(items.length)
          return items.includes(13) ? Effect.fail("unlucky" as const) : Effect.succeed(items)
        },
        { maxBatch: 2, workers: 1 }
      )
      const exits = yield* Effect.forEach([1, 2, 3, 13, 5], (item) => Effect.exit(call(item)), {
        concurrency: "unbounded"
      })
      assert.isTrue(sizes.every((size) => size <= 2))
      const failed = exits.flatMap((exit, i) => Exit.isFailure(exit) ? [[1, 2, 3, 13, 5][i]] : [])
      assert.include(failed, 13)
      assert.isTrue(failed.length <= 2, `only 13's batch fails, got ${failed}`)
      assert.deepStrictEqual(yield* call(7), 7)
    }).pipe(Effect.scoped))

  it.live("a run failing beside a branch it interrupted (Effect.all's sibling) fails its calls only; the loop goes on", () =>
    Effect.gen(function*() {
      // One worker: a loop that ended on that cause would leave the next call waiting for good.
      const call = yield* Batcher.make(
        (items: ReadonlyArray<number>, restore) =>
          items.includes(13)
            ? restore(Effect.all([Effect.fail("unlucky" as const).pipe(Effect.delay("5 millis")), Effect.never], {
              concurrency: 2
            }))
            : Effect.succeed(items),
        { maxBatch: 1, workers: 1 }
      )
      const failed = yield* Effect.exit(call(13))
      assert.isTrue(Exit.isFailure(failed))
      assert.deepStrictEqual(yield* call(7).pipe(Effect.timeout("2 seconds")), 7)
    }).pipe(Effect.scoped))

  it.live("closing the scope: the run under way finishes and answers, a queued call and a later one are interrupted", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const call = yield* Batcher.make(
        (items: ReadonlyArray<number>, restore) =>
          // Like a transaction: an interruptible body, then a COMMIT that is not.
          restore(Effect.void).pipe(Effect.zipRight(Effect.sleep("300 millis")), Effect.as(items)),
        { maxBatch: 100, workers: 1 }
      ).pipe(Scope.extend(scope))
      const first = yield* Effect.fork(call(1))
      yield* Effect.sleep("50 millis")
      const queued = yield* Effect.fork(call(2))
      yield* Effect.sleep("50 millis")
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* Fiber.await(first), Exit.succeed(1))
      const queuedExit = yield* Fiber.await(queued).pipe(Effect.timeout("2 seconds"))
      assert.isTrue(Exit.isInterrupted(queuedExit), `queued call: ${queuedExit}`)
      const later = yield* Effect.exit(call(3)).pipe(Effect.timeout("2 seconds"))
      assert.isTrue(Exit.isInterrupted(later), `call after the close: ${later}`)
    }))

  it.live("a call handed to a waiting loop just as the scope closes is answered interrupted, not left waiting", () =>
    Effect.gen(function*() {
      const answers = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const call = yield* Batcher.make((items: ReadonlyArray<number>) => Effect.succeed(items), {
            maxBatch: 10,
            workers: 1
          }).pipe(Scope.extend(scope))
          yield* Effect.sleep("1 millis")
          // Forked in this order, the call is offered to the loop's `take` before the close
          // interrupts the loop, and the loop has not run since.
          const caller = yield* Effect.fork(call(i))
          yield* Fiber.join(yield* Effect.fork(Scope.close(scope, Exit.void)))
          return yield* Fiber.await(caller).pipe(Effect.timeout("500 millis"), Effect.option)
        }))
      assert.strictEqual(answers.filter(Option.isNone).length, 0, "calls left waiting")
      assert.isTrue(answers.every((exit) => Option.exists(exit, Exit.isInterrupted)))
    }))
})
