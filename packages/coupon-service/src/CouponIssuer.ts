import {
  AlreadyRequested,
  CouponExpired,
  CouponNotFound,
  CouponNotYetOpen,
  CouponRecovering,
  CouponSoldOut,
  PublishFailed
} from "@kpipe/contracts/CouponErrors"
import { IssueAccepted, type IssueState, IssueStatus } from "@kpipe/contracts/CouponModels"
import { CouponEvents, Ids } from "@kpipe/events"
import type { RedisError } from "@kpipe/redis/Redis"
import { LabelledCounter, Unavailable } from "@kpipe/service-kit"
import * as Cache from "effect/Cache"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { type Coupon, CouponStore, type NewCoupon } from "./CouponStore.ts"
import { IssuePublisher } from "./IssuePublisher.ts"
import { ReservationRecovery } from "./ReservationRecovery.ts"
import { StockReservations } from "./StockReservations.ts"

const answers = LabelledCounter.make("coupon_issue_requests_total", "Issue requests by answer", "answer")

const messages: Record<IssueState, string> = {
  PENDING: "Your request is queued; the coupon will be issued shortly.",
  ISSUED: "The coupon has been issued to you.",
  FAILED: "The coupon could not be issued to you. You may request it again while stock lasts.",
  NOT_REQUESTED: "You have not requested this coupon."
}

/**
 * The synchronous part of a sale (the seed's `CouponIssueFacade`): check the coupon, reserve a unit
 * of its stock, publish, answer. `accepted` means the event is in Kafka (acks=all); when publishing
 * fails, or the reserve gets no answer from Redis, the reservation is undone before the caller hears
 * about it (or, if Redis does not answer that either, in the background). Infrastructure errors
 * (`SqlError`, `RedisError`) are left to the HTTP side, which answers them 503.
 */
export class CouponIssuer extends Effect.Service<CouponIssuer>()("@kpipe/coupon-service/CouponIssuer", {
  scoped: Effect.gen(function*() {
    const config = yield* Config
    const store = yield* CouponStore
    const reservations = yield* StockReservations
    const publisher = yield* IssuePublisher
    const recovery = yield* ReservationRecovery
    const undoing = yield* FiberSet.make()

    // Coupons do not change once created: the hot path reads them from memory. A miss is kept
    // briefly, so a flood of requests for an unknown id does not reach the database each time.
    const coupons = yield* Cache.makeWith({
      capacity: 10_000,
      lookup: (couponId: Ids.CouponId) => store.find(couponId),
      timeToLive: (exit) =>
        Exit.isSuccess(exit) && Option.isSome(exit.value)
          ? config.couponCacheTtl
          : Exit.isSuccess(exit)
          ? Duration.seconds(1)
          : Duration.zero
    })

    // The hit of a sale's every request, answered without the Cache's effectful lookup.
    const found = new Map<Ids.CouponId, { readonly coupon: Coupon; readonly until: number }>()
    const remember = (coupon: Coupon) =>
      found.set(coupon.couponId, { coupon, until: Date.now() + Duration.toMillis(config.couponCacheTtl) })

    const coupon = (couponId: Ids.CouponId) => {
      const hit = found.get(couponId)
      if (hit !== undefined && hit.until > Date.now()) return Effect.succeed(hit.coupon)
      return coupons.get(couponId).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new CouponNotFound({ couponId, message: `Coupon ${couponId} does not exist.` })),
          onSome: (coupon) => Effect.as(Effect.sync(() => remember(coupon)), coupon)
        }))
      )
    }

    const create = Effect.fn("CouponIssuer.create")(function*(request: NewCoupon) {
      const created = yield* store.create(request)
      yield* coupons.set(created.couponId, Option.some(created))
      remember(created)
      // If Redis is down now, the first request finds no state and rebuilds it from the database.
      yield* reservations.initialize(created.couponId, created.totalQuantity).pipe(
        Effect.catchAll((error) => Effect.logWarning("Could not open the coupon in Redis yet", error))
      )
      return created
    })

    // Most answers of a sale are this one, identical for everybody: built once per coupon.
    const soldOutAnswers = new Map<Ids.CouponId, CouponSoldOut>()
    const soldOut = (couponId: Ids.CouponId) => {
      let answer = soldOutAnswers.get(couponId)
      if (answer === undefined) {
        answer = new CouponSoldOut({ couponId, message: `Coupon ${couponId} is sold out.` })
        soldOutAnswers.set(couponId, answer)
      }
      return Effect.fail(answer)
    }

    const checkIssuable = (found: Coupon, now: DateTime.Utc) => {
      if (DateTime.lessThan(now, found.validFrom)) {
        return Effect.fail(
          new CouponNotYetOpen({
            couponId: found.couponId,
            validFrom: found.validFrom,
            message: `Coupon ${found.couponId} opens at ${DateTime.formatIso(found.validFrom)}.`
          })
        )
      }
      if (DateTime.greaterThanOrEqualTo(now, found.validUntil)) {
        return Effect.fail(
          new CouponExpired({
            couponId: found.couponId,
            validUntil: found.validUntil,
            message: `Coupon ${found.couponId} expired at ${DateTime.formatIso(found.validUntil)}.`
          })
        )
      }
      return Effect.void
    }

    // Bounded, so an outage under load does not pile up retrying fibers: a reservation left behind
    // after that is the reclaimer's (after RESERVATION_RECLAIM_AGE).
    const undoPolicy = Schedule.exponential("20 millis").pipe(
      Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5))),
      Schedule.upTo(Duration.min(config.reclaimAge, Duration.seconds(30)))
    )
    // Enough for Redis back after a reset; one that does not answer gets the caller a 503 meanwhile.
    const undoWait = Duration.min(config.redisCommandTimeout, Duration.seconds(1))

    /** Undoes a reservation, retried in the background until Redis answers; the caller waits `undoWait` at most. */
    const undo = (rollback: Effect.Effect<boolean, RedisError>) =>
      FiberSet.run(
        undoing,
        rollback.pipe(
          Effect.retry(undoPolicy),
          Effect.tapError((error) =>
            Effect.logError("Undoing a reservation failed for good; the reclaimer will release it", error)
          ),
          Effect.ignore,
          // Forked from the request's uninterruptible block: the service's shutdown must still end it.
          Effect.interruptible
        )
      ).pipe(Effect.flatMap((fiber) => Fiber.await(fiber).pipe(Effect.interruptible, Effect.timeoutOption(undoWait))))

    /** Reserve, publish, and undo the reservation when the publish fails: one block a client cannot interrupt. */
    const reserveAndPublish = (couponId: Ids.CouponId, userId: Ids.UserId, now: DateTime.Utc) =>
      Effect.gen(function*() {
        // randomUUID's output is a UUID by definition: no need to check it per request.
        const eventId = Ids.EventId.make(crypto.randomUUID(), { disableValidation: true })
        const answer = yield* reservations.reserve(couponId, userId, eventId).pipe(
          // Only a reserve that may have run is cancelled: one never sent (Redis unreachable) held nothing.
          Effect.tapError((error) =>
            error.reason === "Timeout" || error.reason === "Lost"
              ? Effect.zipRight(
                Effect.logWarning("Reserving got no answer from Redis; cancelling the request in case it ran", error),
                undo(reservations.cancel(couponId, userId, eventId))
              ).pipe(Effect.annotateLogs({ couponId, userId, eventId }))
              : Effect.void
          )
        )
        switch (answer._tag) {
          case "SoldOut":
            return yield* soldOut(couponId)
          case "Duplicate":
            return yield* new AlreadyRequested({
              couponId,
              userId,
              message: `You have already requested coupon ${couponId}; check its issue status.`
            })
          case "Missing":
          case "Recovering":
            yield* recovery.trigger(couponId)
            return yield* new CouponRecovering({
              couponId,
              message: `Coupon ${couponId} is being restored; please retry in a few seconds.`
            })
          case "Cancelled":
            return yield* new PublishFailed({
              couponId,
              message: "Your request could not be queued and nothing was reserved; please try again."
            })
          case "Accepted":
            break
        }
        // Built from values already checked, and checked again by the topic's encoder: the
        // constructors' own validation would be a third pass on the hot path.
        const event = new CouponEvents.CouponIssueRequested({
          eventId,
          occurredAt: now,
          couponId,
          userId,
          timestamp: DateTime.toEpochMillis(now)
        }, { disableValidation: true })
        yield* publisher.publish(event).pipe(
          Effect.tapError((error) =>
            Effect.zipRight(
              Effect.logWarning("Publishing an issue request failed; rolled back", error),
              undo(reservations.rollback(event.couponId, event.userId, event.eventId))
            ).pipe(Effect.annotateLogs({ couponId, userId, eventId }))
          ),
          Effect.mapError(() =>
            new PublishFailed({
              couponId,
              message: "Your request could not be queued and nothing was reserved; please try again."
            })
          )
        )
        return new IssueAccepted({
          couponId,
          userId,
          eventId,
          status: "PENDING",
          message: "Your request is accepted and queued; check its issue status."
        }, { disableValidation: true })
      }).pipe(
        // From before the reservation until its publish settled: a rebuild waits for it.
        (effect) => recovery.track(couponId, effect),
        Effect.uninterruptible
      )

    // The hot path: `Effect.withSpan` rather than `Effect.fn`, which builds an Error per call to
    // locate the span, and no stack trace per span (formatting them costs more than the request).
    const issue = (couponId: Ids.CouponId, userId: Ids.UserId) =>
      Effect.gen(function*() {
        const found = yield* coupon(couponId)
        const now = yield* DateTime.now
        yield* checkIssuable(found, now)
        return yield* reserveAndPublish(couponId, userId, now)
      }).pipe(
        Effect.tapBoth({
          onFailure: (error) =>
            answers.increment(Unavailable.isInfrastructureError(error) ? "ServiceUnavailable" : error._tag),
          onSuccess: () => answers.increment("Accepted")
        }),
        Effect.withSpan("CouponIssuer.issue", { attributes: { couponId, userId }, captureStackTrace: false })
      )

    const answer = (couponId: Ids.CouponId, userId: Ids.UserId, status: IssueState, extra: {
      readonly reason?: string
      readonly issuedAt?: DateTime.Utc
    } = {}) =>
      new IssueStatus({
        couponId,
        userId,
        status,
        message: status === "FAILED" && extra.reason === "SOLD_OUT"
          ? "The coupon could not be issued to you: it sold out before your request was applied."
          : status === "FAILED" && extra.reason === "NOT_QUEUED"
          ? "Your request could not be queued and nothing is reserved for it; you may request the coupon again."
          : messages[status],
        ...extra
      })

    /** Redis first; the database when Redis is silent, and to confirm anything not ISSUED. */
    const status = Effect.fn("CouponIssuer.status", { captureStackTrace: false })(
      function*(couponId: Ids.CouponId, userId: Ids.UserId) {
        yield* coupon(couponId)
        const cached = yield* reservations.status(couponId, userId).pipe(
          Effect.tapError((error) =>
            Effect.logWarning("Redis status lookup failed; answering from the database", error)
          ),
          Effect.option
        )
        const fromRedis = Option.flatMap(cached, (view) => view.status)
        if (Option.contains(fromRedis, "ISSUED")) return answer(couponId, userId, "ISSUED")
        const pendingEventId = Option.flatMap(cached, (view) => view.pendingEventId)
        const record = yield* store.request(couponId, userId)
        if (Option.isSome(record.issued)) {
          const { eventId, issuedAt } = record.issued.value
          // The consumer committed but its Redis update was lost (e.g. killed right after COMMIT).
          if (Option.isSome(cached)) {
            yield* reservations.markIssued(couponId, userId, eventId).pipe(
              Effect.catchAll((error) =>
                Effect.logWarning(
                  "Repairing an issued request's Redis status failed; the next query tries again",
                  error
                )
              )
            )
          }
          return answer(couponId, userId, "ISSUED", { issuedAt })
        }
        const pending = Option.isSome(pendingEventId) || Option.contains(fromRedis, "PENDING")
        const failed = record.failed
        if (
          Option.isSome(failed) &&
          (!pending || Option.exists(pendingEventId, (eventId) => eventId === failed.value.eventId))
        ) {
          if (Option.isSome(pendingEventId)) {
            yield* reservations.release(couponId, userId, failed.value.eventId).pipe(
              Effect.catchAll((error) =>
                Effect.logWarning("Releasing a failed request's reservation failed; reconciliation reports it", error)
              )
            )
          }
          return answer(couponId, userId, "FAILED", { reason: failed.value.reason })
        }
        if (pending) return answer(couponId, userId, "PENDING")
        if (Option.contains(fromRedis, "FAILED")) return answer(couponId, userId, "FAILED")
        return answer(couponId, userId, "NOT_REQUESTED")
      }
    )

    const myCoupons = Effect.fn("CouponIssuer.myCoupons")(function*(userId: Ids.UserId) {
      return yield* store.userCoupons(userId)
    })

    return { coupon, create, issue, status, myCoupons } as const
  })
}) {}
