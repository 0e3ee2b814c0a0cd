import type { Consumer } from "@kpipe/kafka"
import { DeadLetter } from "@kpipe/pipeline"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { CouponStore } from "./CouponStore.ts"
import { StockReservations } from "./StockReservations.ts"

/**
 * What a dead-lettered request means for the user: the failure is stored (so the status query
 * answers FAILED even without Redis) and the reservation goes back on sale, unless that happened
 * already. Idempotent: a redelivered record changes nothing. Infrastructure faults are retried
 * (backoff up to 10 s) until they pass; each failure is logged with the request it holds up, at
 * Warning, then at Error once it has failed for `errorAfter` (30 s): the partition waits meanwhile.
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
    yield* Effect.gen(function*() {
      yield* store.recordFailure(event, "DEAD_LETTERED", `${letter.errorTag}: ${letter.errorMessage}`)
      const released = yield* reservations.release(event.couponId, event.userId, event.eventId)
      yield* Effect.logWarning("Dead-lettered issue request settled as FAILED").pipe(Effect.annotateLogs({ released }))
    }).pipe(
      Effect.tapError((error) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          (now - started >= errorAfter ? Effect.logError : Effect.logWarning)(
            "Settling a dead-lettered issue request failed; its partition waits, retrying",
            error
          ).pipe(Effect.annotateLogs({ failingForMs: now - started })))
      ),
      Effect.retry(
        Schedule.exponential("200 millis").pipe(
          Schedule.modifyDelay((_, delay) =>
            Duration.min(delay, Duration.seconds(10))
          )
        )
      ),
      Effect.annotateLogs({ couponId: event.couponId, userId: event.userId, eventId: event.eventId })
    )
  }).pipe(
    // An unreadable record cannot be released; the monitor alerts on it.
    Effect.catchTag("ParseError", (error) => Effect.logError("Unreadable dead-lettered record", error)),
    Effect.orDie,
    Effect.withSpan("ReservationRelease.release", { attributes: { offset: record.offset } })
  )
