import { PgClient } from "@effect/sql-pg/PgClient"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { Producer } from "@kpipe/kafka"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { channel } from "../Outbox.ts"
import { Observer, type RelayOptions, type RelayState } from "../OutboxRelay.ts"
import { backlog, oldestPendingSeconds } from "./metrics.ts"
import { cleanup, stats } from "./relayAdmin.ts"
import { publishOnce } from "./relayClaim.ts"

const backoff = Schedule.exponential("100 millis", 2).pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5)))
)

export const run = (
  options: RelayOptions
): Effect.Effect<void, never, SqlClient | PgClient | Producer.Producer | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient
    const pollInterval = Duration.decode(options.pollInterval ?? Duration.seconds(1))
    // One notification wakes one idle loop: a loop that finds work keeps claiming on its own, so
    // waking them all would only add empty claims.
    const wakeup = yield* Queue.sliding<void>(1)
    const concurrency = options.concurrency ?? 1
    const observer = yield* Effect.serviceOption(Observer)
    const observe = (state: RelayState, detail?: string) =>
      Effect.sync(() => {
        if (Option.isSome(observer)) observer.value.relay(state, detail)
      })

    yield* pg.listen(channel).pipe(
      Stream.runForEach(() => Queue.offer(wakeup, void 0)),
      Effect.tapErrorCause((cause) => Effect.logWarning("Outbox notifications lost; polling meanwhile", cause)),
      Effect.retry(backoff),
      Effect.forkScoped
    )

    // A claim that could not publish (broker or database away) is tried again after `backoff`,
    // which starts over once a claim gets through.
    const claim = publishOnce(options).pipe(
      Effect.flatMap((result) => result._tag === "Blocked" ? Effect.fail(result.error) : Effect.succeed(result)),
      Effect.tapError((error) =>
        Effect.zipRight(
          observe("backingOff", error.message),
          Effect.logWarning("Outbox relay could not publish; backing off", error)
        )
      ),
      Effect.retry(backoff),
      Effect.zipLeft(observe("running"))
    )
    const loop = claim.pipe(
      Effect.flatMap((result) =>
        result._tag === "Published" && result.count > 0
          ? Effect.void
          : Queue.take(wakeup).pipe(Effect.timeout(pollInterval), Effect.ignore)
      ),
      Effect.forever
    )
    yield* observe("running")
    yield* Effect.forkScoped(loop.pipe(Effect.onExit(() => observe("stopped")))).pipe(
      Effect.replicateEffect(concurrency)
    )

    const report = stats.pipe(
      Effect.tap(({ oldestPendingAge, pending }) =>
        Effect.zipRight(
          Metric.set(backlog, pending),
          Metric.set(
            oldestPendingSeconds,
            Option.match(oldestPendingAge, { onNone: () => 0, onSome: Duration.toSeconds })
          )
        )
      ),
      Effect.ignoreLogged
    )
    yield* report.pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
    const retention = options.retention ?? Duration.days(1)
    yield* cleanup(retention).pipe(
      Effect.ignoreLogged,
      Effect.repeat(Schedule.spaced(options.cleanupInterval ?? Duration.minutes(1))),
      Effect.forkScoped
    )
  })
