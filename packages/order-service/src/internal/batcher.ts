import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

/** Makes its effect interruptible again inside a run, which is otherwise uninterruptible. */
export type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

interface Call<I, O, E> {
  readonly item: I
  readonly done: Deferred.Deferred<O, E>
}

/**
 * Group commit: the calls made while a `run` is under way go to the next `run` together (at most
 * `maxBatch`), so concurrent callers share one transaction, one statement and one round trip
 * instead of taking one each. `run` answers each item, in the items' order; when it fails or dies,
 * every call of its batch gets that cause. `workers` batches may be under way at once. The loops
 * live as long as the scope and never end on a failure.
 *
 * A run is uninterruptible but for what it passes through `restore`: when the scope closes during
 * a transaction's COMMIT, the run finishes and its callers learn what was committed; a transaction
 * restores its body only (`sql.withTransaction(restore(body))`), never the COMMIT around it.
 */
export const make = <I, O, E, R>(
  run: (items: ReadonlyArray<I>, restore: Restore) => Effect.Effect<ReadonlyArray<O>, E, R>,
  options: { readonly maxBatch: number; readonly workers: number }
): Effect.Effect<(item: I) => Effect.Effect<O, E>, never, R | Scope.Scope> =>
  Effect.gen(function*() {
    // Released after the loops (finalizers run in reverse): calls not answered then are answered
    // "interrupted", never left waiting; from then on a call is refused before it is queued. Not
    // only the queued ones: a call handed to a loop waiting in `take` just as the loop is
    // interrupted is in neither the queue nor a run.
    let closed = false
    const unanswered = new Set<Call<I, O, E>>()
    const queue = yield* Effect.acquireRelease(Queue.unbounded<Call<I, O, E>>(), (queue) =>
      Effect.suspend(() => {
        closed = true
        return Effect.forEach(unanswered, (call) => Deferred.interrupt(call.done), { discard: true })
      }).pipe(Effect.zipRight(Queue.shutdown(queue))))
    const settle = (calls: ReadonlyArray<Call<I, O, E>>, exit: Exit.Exit<ReadonlyArray<O>, E>) =>
      Effect.forEach(calls, (call, i) =>
        Deferred.done(
          call.done,
          Exit.flatMap(exit, (answers) =>
            i < answers.length
              ? Exit.succeed(answers[i]!)
              : Exit.die(new Error(`batch answered ${answers.length} of ${calls.length} items`)))
        ), { discard: true })
    // Calls taken from the queue are run and settled whatever happens: only the wait for them, and
    // what the run restores, can be interrupted. An interruption of the loop that arrived during the
    // run ends it at the next wait. Not the run's exit: one that failed beside a branch it interrupted
    // (Effect.all's siblings) also holds an interruption, and the loop would end with no one told.
    const loop = Effect.uninterruptibleMask((restore) =>
      restore(Queue.takeBetween(queue, 1, options.maxBatch)).pipe(
        Effect.flatMap((chunk) => {
          const calls = [...chunk]
          return run(calls.map((call) => call.item), restore).pipe(
            Effect.exit,
            Effect.flatMap((exit) => settle(calls, exit))
          )
        })
      )
    ).pipe(Effect.forever)
    yield* Effect.forkScoped(loop).pipe(Effect.replicateEffect(options.workers))
    return (item: I) =>
      Effect.flatMap(Deferred.make<O, E>(), (done) =>
        Effect.suspend(() => {
          const call = { item, done }
          if (closed || !queue.unsafeOffer(call)) return Effect.interrupt
          unanswered.add(call)
          return Effect.ensuring(Deferred.await(done), Effect.sync(() => unanswered.delete(call)))
        }))
  })
