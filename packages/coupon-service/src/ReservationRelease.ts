import type { Consumer } from "@kpipe/kafka"
import { DeadLetter, isInfrastructure } from "@kpipe/pipeline"
import { RedisError } from "@kpipe/redis/Redis"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { CouponStore } from "./CouponStore.ts"
import { StockReservations } from "./StockReservations.ts"

/**
 * Whether waiting can fix `error`: the database or Redis away. SQL errors as the pipeline's consumers
 * classify them (`isInfrastructure`), Redis errors as the client does (`RedisError.unavailable`).
 */
const isInfrastructureFault = (error: unknown): boolean =>
  error instanceof RedisError ? error.unavailable : isInfrastructure(error)

const backoff = Schedule.exponential("200 millis").pipe(
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(10)))
)

/**
 * What a dead-lettered request means for the user: the failure is stored (so the status query
 * answers FAILED even without Redis) and the reservation goes back on sale, unless that happened
 * already. Idempotent: a redelivered record changes nothing.
 *
 * Only infrastructure faults (the database or Redis away) are retried (backoff up to 10 s) until
 * they pass; each failure is logged with the request it holds up, at Warning, then at Error once it
 * has failed for `errorAfter` (30 s): the partition waits meanwhile. Any other failure of a step
 * (the request itself cannot be stored, e.g. a coupon id beyond the INTEGER column) would fail the
 * same way forever and block every later dead letter of the topic's partition: it is logged once
 * at Error with the request and skipped, and the other step still runs (a failure that cannot be
 * stored still has its reservation released). Nothing is lost: the dead letter stays in the
 * failed-events table (`kpipe_failed_events`, recorded by the dead-letter sink and the monitor
 * group) for an operator.
 */
export const release = (
  record: Consumer.ConsumerRecord,
  options: { readonly errorAfter?: Duration.DurationInput | undefined } = {}
) =>
  Effect.gen(function*() {
    const config = yield* Config
    const store = yield* CouponStore
    const reservations = yield* StockReservations
    const errorAfter = Duration.toMillis(options.errorAfter ?? Duration.seconds(30))
    const { letter, value } = yield* DeadLetter.decode(record)
    if (value === null) return yield* Effect.logError("Dead-lettered request without a value; nothing to release")
    const event = yield* config.topics.requests.decode(value.toString("utf8"))
    const started = yield* Clock.currentTimeMillis

    /** `step` with its infrastructure faults retried; `None` when it failed otherwise (logged, skipped). */
    const settle = <A, E>(what: string, step: Effect.Effect<A, E>) =>
      step.pipe(
        Effect.tapError((error) =>
          isInfrastructureFault(error)
            ? Effect.flatMap(Clock.currentTimeMillis, (now) =>
              (now - started >= errorAfter ? Effect.logError : Effect.logWarning)(
                `${what} failed; its partition waits, retrying`,
                error
              ).pipe(Effect.annotateLogs({ failingForMs: now - started })))
            : Effect.void
        ),
        Effect.retry({ schedule: backoff, while: isInfrastructureFault }),
        Effect.asSome,
        Effect.catchAll((error) =>
          Effect.logError(
            `${what} failed, not for an infrastructure fault: retrying cannot help, so it is skipped and the partition moves on. The dead letter stays in the failed-events table (kpipe_failed_events) for an operator`,
            error
          ).pipe(Effect.as(Option.none<A>()))
        )
      )

    yield* Effect.gen(function*() {
      const stored = yield* settle(
        "Storing the failure of a dead-lettered issue request",
        store.recordFailure(event, "DEAD_LETTERED", `${letter.errorTag}: ${letter.errorMessage}`)
      )
      const released = yield* settle(
        "Releasing the reservation of a dead-lettered issue request",
        reservations.release(event.couponId, event.userId, event.eventId)
      )
      if (Option.isSome(stored) && Option.isSome(released)) {
        yield* Effect.logWarning("Dead-lettered issue request settled as FAILED").pipe(
          Effect.annotateLogs({ released: released.value })
        )
      }
    }).pipe(Effect.annotateLogs({ couponId: event.couponId, userId: event.userId, eventId: event.eventId }))
  }).pipe(
    // An unreadable record cannot be released; the monitor alerts on it.
    Effect.catchTag("ParseError", (error) => Effect.logError("Unreadable dead-lettered record", error)),
    Effect.orDie,
    Effect.withSpan("ReservationRelease.release", { attributes: { offset: record.offset } })
  )
