import type { Ids } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { CouponStore } from "./CouponStore.ts"
import { awaitCaughtUp } from "./internal/consumerProgress.ts"
import { StockReservations } from "./StockReservations.ts"

/**
 * Rebuilds a coupon's stock reservations from the database when Redis lost it (a restart without
 * persistence, an eviction, a flush).
 *
 * The database alone is not the truth while a sale runs: requests accepted before the loss may
 * still sit in Kafka. So the rebuild (1) closes the coupon's reservations (state `recovering`: requests get
 * a typed 503) under a lease, so one replica rebuilds; (2) waits until this replica's accepted
 * requests for the coupon are published, plus `RECOVERY_GRACE` for other replicas'; (3) snapshots
 * the end offsets of the requests topic and waits until `coupon-issue-group` has committed up to
 * them, so every request accepted before the coupon closed is in the database; (4) empties the
 * coupon's keys, reads the issued users from the database, adds them to the set (and shows them
 * ISSUED), and (5) reopens the coupon with counter = number of issued users. Consumers that issue
 * during the rebuild add their users to the set themselves, so nothing committed is missed.
 */
export class ReservationRecovery extends Effect.Service<ReservationRecovery>()(
  "@kpipe/coupon-service/ReservationRecovery",
  {
    scoped: Effect.gen(function*() {
      const config = yield* Config
      const reservations = yield* StockReservations
      const store = yield* CouponStore
      const admin = yield* Admin.Admin
      const running = yield* FiberMap.make<Ids.CouponId>()
      // Rebuilds run in the service's own context, not in that of the request that noticed the loss.
      const runFork = yield* FiberMap.runtime(running)<never>()
      // Requests of each coupon between their reservation and the outcome of its publish.
      const active = new Map<Ids.CouponId, Set<number>>()
      let nextRequest = 0
      const lease = Duration.sum(config.recoveryTimeout, Duration.seconds(10))

      /** Runs a request's reserve-and-publish as one a rebuild of the coupon must wait for. */
      const track = <A, E, R>(couponId: Ids.CouponId, effect: Effect.Effect<A, E, R>) =>
        Effect.suspend(() => {
          const id = nextRequest++
          const requests = active.get(couponId) ?? new Set<number>()
          active.set(couponId, requests.add(id))
          return Effect.ensuring(
            effect,
            Effect.sync(() => {
              requests.delete(id)
              if (requests.size === 0 && active.get(couponId) === requests) active.delete(couponId)
            })
          )
        })

      /** Waits for the requests that had begun when the coupon closed (later ones find it closed). */
      const localPublishesSettled = (couponId: Ids.CouponId) =>
        Effect.suspend(() => {
          const begun = [...(active.get(couponId) ?? [])]
          return Effect.sync(() => begun.some((id) => active.get(couponId)?.has(id) === true)).pipe(
            Effect.repeat({ while: (busy) => busy, schedule: Schedule.spaced("10 millis") }),
            Effect.timeoutOption(config.recoveryTimeout)
          )
        })

      const rebuild = (couponId: Ids.CouponId, token: string) =>
        Effect.gen(function*() {
          yield* Effect.logWarning("Coupon state missing in Redis; rebuilding it from the database")
          yield* localPublishesSettled(couponId)
          yield* Effect.sleep(config.recoveryGrace)
          yield* awaitCaughtUp(config.topics.issueGroup, config.topics.requests.name, config.recoveryTimeout).pipe(
            Effect.provideService(Admin.Admin, admin)
          )
          const coupon = yield* store.find(couponId)
          if (Option.isNone(coupon)) return yield* reservations.abandonRecovery(couponId, token)
          if (!(yield* reservations.resetForRebuild(couponId, token))) return
          const users = yield* store.issuedUsers(couponId)
          for (const chunk of Chunk.chunksOf(Chunk.fromIterable(users), 1_000)) {
            if (!(yield* reservations.addIssued(couponId, token, Chunk.toReadonlyArray(chunk)))) return
          }
          const opened = yield* reservations.finishRecovery(couponId, token, coupon.value.totalQuantity)
          if (Option.isSome(opened)) {
            yield* Effect.logInfo("Coupon state rebuilt from the database").pipe(
              Effect.annotateLogs({ issuedUsers: opened.value, totalQuantity: coupon.value.totalQuantity })
            )
          }
        }).pipe(
          Effect.tapErrorCause((cause) =>
            Effect.zipRight(
              Effect.logError("Rebuilding the coupon failed; the next request tries again", cause),
              reservations.abandonRecovery(couponId, token).pipe(
                Effect.catchAll((error) =>
                  Effect.logWarning("Giving back the rebuild lease failed; it expires on its own", error)
                )
              )
            )
          ),
          Effect.ignore
        )

      const recover = (couponId: Ids.CouponId) =>
        Effect.gen(function*() {
          const token = crypto.randomUUID()
          const begun = yield* reservations.beginRecovery(couponId, token, lease)
          if (begun === "STARTED") yield* rebuild(couponId, token)
        }).pipe(
          Effect.catchAllCause((cause) => Effect.logError("Could not start rebuilding the coupon", cause)),
          Effect.annotateLogs({ couponId }),
          Effect.withSpan("ReservationRecovery.recover", { attributes: { couponId } })
        )

      /** Starts rebuilding the coupon in the background, unless this replica already is. */
      const trigger = (couponId: Ids.CouponId) =>
        Effect.sync(() => void runFork(couponId, recover(couponId), { onlyIfMissing: true }))

      return { track, trigger } as const
    })
  }
) {}
