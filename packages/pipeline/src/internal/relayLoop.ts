import { PgClient } from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import type { Producer } from "@kpipe/kafka"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { channel } from "../Outbox.ts"
import { defaultRetention, Observer, type RelayOptions, type RelayState } from "../OutboxRelay.ts"
import { backlog, claimFailuresTotal, claimStallsTotal, oldestPendingSeconds } from "./metrics.ts"
import { cleanup, cleanupKeys, stats } from "./relayAdmin.ts"
import { claimOnce, holdBehindFailed, makeState, shardsPerClaimOf } from "./relayClaim.ts"
import { parseHint, ShardHints } from "./relayHints.ts"

/** What a relay notifies itself with to learn that it listens (an append notifies the shards of its rows). */
const listeningProbe = "relay listening"
const probeEveryMs = 2_000
const silentForMs = 6_000

class ListeningSilent extends Data.TaggedError("ListeningSilent")<{ readonly message: string }> {}

/** A claim failing for this long is logged at Error, not Warning: someone should look. */
const alertAfterSeconds = 30

/**
 * A claim still waiting after this long is reported, again every `alertAfterSeconds` (Warning, at
 * Error once it has waited `alertAfterSeconds`: the first Error at 40 s; the relay backing off meanwhile): kafkajs retries a send the broker does not answer, or answers
 * with a retriable error (too few in-sync replicas, a leader election), without end, and logs it at
 * Debug only.
 */
const slowClaimAfterSeconds = 10

/**
 * After an outage a loop claims again within 2 s of the broker or database coming back: a cap of
 * 5 s made the relay's resume alone up to half of the fault matrix's 10 s recovery bound. Jittered
 * after the cap (between half of it and all of it): jittered before, every capped wait was exactly
 * 2 s, and the loops of every relay process claimed in lockstep.
 */
export const backoff = Schedule.exponential("100 millis", 2).pipe(
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(2))),
  Schedule.jitteredWith({ min: 0.5, max: 1 })
)

interface LoopState {
  readonly state: RelayState
  readonly detail?: string
}

/**
 * What a relay's claim loops come to: backing off when any of them is (its shards wait), stopped
 * when all are, else running.
 */
export const combine = (loops: ReadonlyArray<LoopState>): LoopState =>
  loops.find((loop) => loop.state === "backingOff") ??
    (loops.every((loop) => loop.state === "stopped") ? { state: "stopped" } : { state: "running" })

export const run = (
  options: RelayOptions
): Effect.Effect<void, never, SqlClient | PgClient | Producer.Producer | Scope.Scope> =>
  Effect.gen(function*() {
    const pg = yield* PgClient
    const sql = yield* SqlClient
    const pollInterval = Duration.decode(options.pollInterval ?? Duration.seconds(1))
    // One notification wakes one idle loop: a loop that finds work keeps claiming on its own, so
    // waking them all would only add empty claims.
    const wakeup = yield* Queue.sliding<void>(1)
    const hints = new ShardHints(Duration.toMillis(pollInterval))
    const shardsPerClaim = shardsPerClaimOf(options)
    const concurrency = options.concurrency ?? 1
    const observer = yield* Effect.serviceOption(Observer)
    // Each claim loop's own state; the observer is told what they come to together, so one loop
    // that claims fine does not hide another that backs off (the last report had won).
    const loops = Array.from({ length: concurrency }, (): LoopState => ({ state: "running" }))
    const observe = (loop: number, state: RelayState, detail?: string) =>
      Effect.sync(() => {
        loops[loop] = { state, ...(detail === undefined ? {} : { detail }) }
        if (Option.isSome(observer)) {
          const { detail: combinedDetail, state: combined } = combine(loops)
          observer.value.relay(combined, combinedDetail)
        }
      })

    // A row appended while LISTEN is not active (at start, or while the listening session is
    // re-established) notifies nobody, and a claim made before could not see it: only the poll would
    // find it. And @effect/sql-pg ignores errors of its listening session, so one that was ended (a
    // failover, a restart, an operator) is silent for good. So the relay notifies itself: at first
    // until it hears that (then it claims), then every 2 s; when nothing was heard for 6 s it listens
    // anew, on a new session.
    const listenOnce = Effect.gen(function*() {
      const startedAt = Date.now()
      let heardAt: number | undefined
      let probedAt = 0
      const hear = (payload: string) =>
        Effect.suspend(() => {
          const first = heardAt === undefined
          heardAt = Date.now()
          if (payload !== listeningProbe) {
            const shards = parseHint(payload)
            if (shards === undefined) hints.lookAtAll()
            else hints.notified(shards)
          } else if (!first) return Effect.void
          // Listening from now on: what was appended before notified nobody.
          if (first) hints.lookAtAll()
          return Queue.offer(wakeup, void 0)
        })
      const watch = Effect.suspend(() => {
        const now = Date.now()
        if (now - (heardAt ?? startedAt) > silentForMs) {
          return new ListeningSilent({ message: `no notification heard for ${silentForMs / 1000} s, not even its own` })
        }
        if (heardAt !== undefined && now - probedAt < probeEveryMs) return Effect.void
        probedAt = now
        // Failing or not, what counts is whether it is heard; untraced, or every relay would trace a
        // statement every 2 s.
        return sql`SELECT pg_notify(${channel}, ${listeningProbe})`.pipe(Effect.ignore, Effect.withTracerEnabled(false))
      }).pipe(
        // Every 100 ms until the first probe is heard, then at the probe's pace.
        Effect.zipRight(Effect.suspend(() => Effect.sleep(heardAt === undefined ? 100 : probeEveryMs))),
        Effect.forever
      )
      // Disconnected: ending the stream on a session that hangs must not hold the next one back.
      yield* Effect.raceFirst(pg.listen(channel).pipe(Stream.runForEach(hear), Effect.disconnect), watch)
    })
    yield* listenOnce.pipe(
      Effect.sandbox,
      Effect.tapError((cause) => Effect.logWarning("Outbox notifications lost; polling meanwhile", cause)),
      Effect.retry({ schedule: backoff, while: (cause) => !Cause.isInterruptedOnly(cause) }),
      Effect.forkScoped
    )

    const stallReports = (loop: number, startedAt: number) =>
      Effect.gen(function*() {
        yield* Effect.sleep(Duration.seconds(slowClaimAfterSeconds))
        while (true) {
          const waited = Math.round((Date.now() - startedAt) / 1000)
          yield* observe(loop, "backingOff", `a claim has waited ${waited} s for the broker or the database`)
          yield* Metric.increment(claimStallsTotal)
          const message = "Outbox relay claim still waiting for the broker or the database; its shards wait with it"
          yield* (waited < alertAfterSeconds ? Effect.logWarning(message) : Effect.logError(message)).pipe(
            Effect.annotateLogs({ waitingSeconds: waited })
          )
          yield* Effect.sleep(Duration.seconds(alertAfterSeconds))
        }
      })
    const watchedForStall = <A, E, R>(loop: number, claim: Effect.Effect<A, E, R>) =>
      Effect.suspend(() => {
        const startedAt = Date.now()
        // A child of the loop's fiber: ended with the claim, or with the loop.
        return Effect.flatMap(Effect.fork(stallReports(loop, startedAt)), (reports) =>
          claim.pipe(
            Effect.ensuring(Effect.zipRight(
              Fiber.interrupt(reports),
              Effect.suspend(() => {
                const waited = Math.round((Date.now() - startedAt) / 1000)
                return waited < slowClaimAfterSeconds
                  ? Effect.void
                  : Effect.logInfo(`Outbox relay claim ended after waiting ${waited} s`)
              })
            ))
          ))
      })

    // A claim that could not publish (broker or database away), or that died (a COMMIT or ROLLBACK
    // on a lost connection is a defect in @effect/sql), is tried again after `backoff`, which starts
    // over once a claim gets through. Nothing ends the loop but the scope: whatever fails, it is
    // logged with what waits behind it, and the loop goes on.
    const claimLoop = (loop: number) =>
      Effect.gen(function*() {
        const state = makeState()
        let failingSince: number | undefined
        let failedLast = false
        // Whether to claim again at once: it published, or it got some of the notified shards and more
        // wait that it did not look at. Not when it got none: another relay holds them (for as long as
        // its claim lasts), and claiming again at once would spin until it lets go.
        const attempt = Effect.suspend(() => {
          const target = hints.next(shardsPerClaim, Date.now(), failedLast)
          if (target === undefined) return Effect.succeed(false)
          return watchedForStall(loop, claimOnce(options, state, target._tag === "All" ? undefined : target.shards))
            .pipe(
              Effect.flatMap(({ filled, locked, result }) => {
                if (result._tag === "Blocked") return Effect.fail(result.error)
                failedLast = false
                hints.claimed(target, locked, filled)
                return Effect.succeed(
                  (result._tag === "Published" && result.count > 0) ||
                    (target._tag === "Shards" && target.rest > 0 && locked.length > 0)
                )
              }),
              Effect.onError(() =>
                Effect.sync(() => {
                  failedLast = true
                  hints.lookAtAll()
                })
              )
            )
        })
        const claim = attempt.pipe(
          Effect.sandbox,
          Effect.tapError((cause) =>
            Effect.gen(function*() {
              if (Cause.isInterruptedOnly(cause)) return
              yield* observe(loop, "backingOff", Cause.pretty(cause).split("\n")[0])
              failingSince ??= Date.now()
              const failingFor = Math.round((Date.now() - failingSince) / 1000)
              yield* Metric.increment(claimFailuresTotal)
              // Bounded: with the database unreachable, the count would hold the back-off up for as
              // long as the connection attempt lasts.
              const pending = yield* stats.pipe(
                Effect.map((s) => s.pending),
                Effect.timeout("1 second"),
                Effect.orElseSucceed(() => "unknown")
              )
              const log = Cause.isFailType(cause) && failingFor < alertAfterSeconds
                ? Effect.logWarning("Outbox relay could not publish; backing off", cause)
                : Effect.logError(
                  failingFor < alertAfterSeconds
                    ? "Outbox relay claim died; backing off and claiming again"
                    : "Outbox relay has not published for a while; backing off and claiming again",
                  cause
                )
              yield* log.pipe(Effect.annotateLogs({ pendingRows: pending, failingForSeconds: failingFor }))
            })
          ),
          Effect.retry({ schedule: backoff, while: (cause) => !Cause.isInterruptedOnly(cause) }),
          Effect.zipLeft(observe(loop, "running")),
          Effect.tap(() =>
            Effect.suspend(() => {
              if (failingSince === undefined) return Effect.void
              const after = Math.round((Date.now() - failingSince) / 1000)
              failingSince = undefined
              return Effect.logInfo(`Outbox relay publishes again after ${after} s`)
            })
          ),
          Effect.unsandbox
        )
        return yield* claim.pipe(
          Effect.flatMap((again) =>
            again ? Effect.void : Queue.take(wakeup).pipe(Effect.timeout(pollInterval), Effect.ignore)
          ),
          Effect.forever
        )
      })
    const runLoop = (loop: number) =>
      claimLoop(loop).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("Outbox relay loop failed; restarting it", cause).pipe(
            Effect.zipRight(Effect.sleep("1 second"))
          )
        ),
        Effect.forever
      )
    yield* observe(0, "running")
    yield* Effect.forEach(
      loops.keys(),
      (loop) => Effect.forkScoped(runLoop(loop).pipe(Effect.onExit(() => observe(loop, "stopped")))),
      { discard: true }
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
      Effect.catchAllCause((cause) => Effect.logWarning("Outbox stats could not be read", cause))
    )
    yield* report.pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.forkScoped)
    yield* holdBehindFailed.pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("Rows behind FAILED outbox rows could not be held; claims read past them meanwhile", cause)
      ),
      Effect.repeat(Schedule.spaced("5 seconds")),
      Effect.forkScoped
    )
    const retention = options.retention ?? defaultRetention
    yield* Effect.zipRight(cleanup(retention), cleanupKeys).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("Outbox cleanup failed; trying again later", cause)),
      Effect.repeat(Schedule.spaced(options.cleanupInterval ?? Duration.minutes(1))),
      Effect.forkScoped
    )
  })
