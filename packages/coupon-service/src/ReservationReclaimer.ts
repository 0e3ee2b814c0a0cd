import { Ids } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { CouponStore } from "./CouponStore.ts"
import { type EndOffsets, endOffsets, partitionsBehind } from "./internal/consumerProgress.ts"
import { type Outcome, type PendingRequest, StockReservations } from "./StockReservations.ts"

const reclaimed = Metric.counter("coupon_reservations_reclaimed_total", {
  description: "Reservations released because their request never reached Kafka (failed as NOT_QUEUED)",
  incremental: true
})

// Stale requests of one coupon handled per pass; the next pass takes the rest.
const perCoupon = 1_000

/**
 * Gives back the units of reservations whose request never reached Kafka: the process that
 * reserved died before its publish was acknowledged, or a failed publish's rollback failed too.
 * Such a user would stay PENDING for ever and the unit never be sold.
 */
export class ReservationReclaimer extends Effect.Service<ReservationReclaimer>()(
  "@kpipe/coupon-service/ReservationReclaimer",
  {
    effect: Effect.gen(function*() {
      const config = yield* Config
      const store = yield* CouponStore
      const reservations = yield* StockReservations

      /**
       * Settles pending requests believed to have no record in Kafka: those the database has no
       * trace of are failed as `NOT_QUEUED` (so a record arriving after all issues nothing) and
       * released; those it settled meanwhile are shown as such. Redis only ever undoes the
       * reservation of the same event id, never a newer request of the user. How many were failed now.
       */
      const release = Effect.fn("ReservationReclaimer.release")(
        function*(couponId: Ids.CouponId, requests: ReadonlyArray<PendingRequest>) {
          if (requests.length === 0) return 0
          const failed = yield* store.reclaim(couponId, config.topics.issueGroup, requests)
          const settled = yield* store.settled(couponId, requests.map((request) => request.eventId))
          // A request of a user who holds the coupon through another one is settled as that coupon:
          // its unit is the coupon's, and the user stays counted once.
          const holders = yield* store.holders(
            couponId,
            requests.filter((request) => !settled.has(request.eventId)).map((request) => request.userId)
          )
          const outcomes = requests.flatMap((request): Array<Outcome> => {
            const outcome = settled.get(request.eventId) ?? (holders.has(request.userId) ? "ISSUED" : undefined)
            return outcome === undefined ? [] : [{
              couponId,
              userId: Ids.UserId.make(Number(request.userId)),
              eventId: Ids.EventId.make(request.eventId),
              issued: outcome === "ISSUED"
            }]
          })
          yield* reservations.settleAll(outcomes)
          for (const request of requests) {
            if (!failed.has(request.eventId)) continue
            yield* Effect.logWarning(
              "Reservation without a request in Kafka released; the request failed as NOT_QUEUED"
            )
              .pipe(Effect.annotateLogs({ couponId, userId: request.userId, eventId: request.eventId }))
          }
          yield* Metric.incrementBy(reclaimed, failed.size)
          return failed.size
        }
      )

      /** `release` for the pending requests Redis accepted at or before `cutoff` (ms, Redis's clock). */
      const sweep = Effect.fn("ReservationReclaimer.sweep")(function*(cutoff: number) {
        const coupons = yield* store.recentCoupons(config.statusTtl)
        const counts = yield* Effect.forEach(
          coupons,
          (couponId) =>
            Effect.flatMap(reservations.stale(couponId, cutoff, perCoupon), (stale) => release(couponId, stale)),
          { concurrency: 4 }
        )
        return counts.reduce((sum, n) => sum + n, 0)
      })

      return { release, sweep } as const
    })
  }
) {}

interface Fence {
  /** Redis's clock when the end offsets were read (ms). */
  readonly at: number
  readonly targets: EndOffsets
  warned: boolean
}

/**
 * The reclaimer's loop (every `RESERVATION_RECLAIM_INTERVAL`). A pass notes Redis's time T, then
 * the requests topic's end offsets; once `coupon-issue-group` has committed up to them, every
 * request accepted by T − `RESERVATION_RECLAIM_AGE` and published lies below them and is in the
 * database, so a request of that age still pending with no trace there was never queued, and is
 * released. Safe on several replicas at once. A failed pass is logged and the next one tries again.
 */
export const layer = Layer.scopedDiscard(Effect.gen(function*() {
  const config = yield* Config
  const reclaimer = yield* ReservationReclaimer
  const reservations = yield* StockReservations
  const admin = yield* Admin.Admin
  const topic = config.topics.requests.name
  const groupId = config.topics.issueGroup
  const age = Duration.toMillis(config.reclaimAge)
  let fence: Fence | undefined

  const arm = Effect.gen(function*() {
    const at = yield* reservations.now
    const targets = yield* endOffsets(topic)
    return { at, targets, warned: false } satisfies Fence
  })

  const pass = Effect.gen(function*() {
    if (fence === undefined) {
      fence = yield* arm
      return
    }
    const armed = fence
    if ((yield* partitionsBehind(groupId, topic, armed.targets)) > 0) {
      const now = yield* reservations.now
      if (!armed.warned && now - armed.at > age) {
        armed.warned = true
        yield* Effect.logWarning(
          "The issue consumer group is far behind the requests topic; reservations without a request wait to be released"
        ).pipe(Effect.annotateLogs({ groupId, topic, waitingMs: now - armed.at }))
      }
      return
    }
    fence = undefined
    yield* reclaimer.sweep(armed.at - age)
    fence = yield* arm
  }).pipe(Effect.provideService(Admin.Admin, admin), Effect.withSpan("ReservationReclaimer.pass"))

  yield* pass.pipe(
    Effect.catchAllCause((cause) =>
      Effect.logError("A reservation reclaim pass failed; the next one tries again", cause)
    ),
    Effect.repeat(Schedule.spaced(config.reclaimInterval)),
    Effect.onExit((exit) =>
      Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
        ? Effect.logError("The reservation reclaimer stopped", exit.cause)
        : Effect.void
    ),
    Effect.forkScoped
  )
})).pipe(Layer.provide(ReservationReclaimer.Default))
