import type { Ids } from "@kpipe/events"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Config } from "./Config.ts"
import { CouponStore } from "./CouponStore.ts"
import { StockReservations } from "./StockReservations.ts"

export type DriftKind =
  | "TOTAL_MISMATCH"
  | "COUNTER_NOT_SET_SIZE"
  | "RESERVED_OVER_TOTAL"
  | "DB_ISSUED_OVER_TOTAL"
  | "DB_COUNTER_NOT_ROWS"
  | "ISSUED_NOT_IN_REDIS"
  | "RESERVED_WITHOUT_REQUEST"
  | "STALE_RESERVATION"
  | "REDIS_STATE_MISSING"

/** One disagreement between Redis and the database, with up to 20 of the users concerned. */
export interface Drift {
  readonly kind: DriftKind
  readonly detail: string
  readonly userIds: ReadonlyArray<string>
}

/** What a check found for one coupon. */
export interface Report {
  readonly couponId: Ids.CouponId
  readonly totalQuantity: number
  readonly redis: {
    readonly state: "ready" | "recovering" | "missing"
    readonly counter: number
    readonly members: number
    readonly pending: number
  }
  readonly db: { readonly issuedQuantity: number; readonly userCoupons: number; readonly failures: number }
  /** Requests accepted and not yet applied by the consumer (stale ones excepted: they are drift). */
  readonly inFlight: number
  /** Requests the database settled whose Redis entry still says pending. */
  readonly lagging: number
  readonly drift: ReadonlyArray<Drift>
  readonly consistent: boolean
}

const sample = (users: Iterable<string>) => Array.from(users).slice(0, 20)

/**
 * Compares a coupon's Redis state with the database. Redis reserves (issued + in-flight users) and
 * the database issues; they agree when every issued user is in the Redis set, every other member
 * has a request in flight, the counter equals the set size, and nothing exceeds the quantity.
 * `None` when the coupon does not exist.
 */
export class Reconciliation extends Effect.Service<Reconciliation>()("@kpipe/coupon-service/Reconciliation", {
  effect: Effect.gen(function*() {
    const config = yield* Config
    const store = yield* CouponStore
    const reservations = yield* StockReservations
    const age = Duration.toMillis(config.reclaimAge)

    const check = Effect.fn("Reconciliation.check")(function*(couponId: Ids.CouponId) {
      const coupon = yield* store.find(couponId)
      if (Option.isNone(coupon)) return Option.none<Report>()
      const total = coupon.value.totalQuantity
      const view = yield* reservations.inspect(couponId)
      const issued = new Set(yield* store.issuedUsers(couponId))
      const counts = Option.getOrElse(yield* store.counts(couponId), () => ({
        issuedQuantity: 0,
        userCoupons: 0,
        failures: 0
      }))
      const pendingUsers = Object.keys(view.pending)
      const settled = yield* store.settled(couponId, Object.values(view.pending))
      const lagging = pendingUsers.filter((userId) => settled.has(view.pending[userId]!))
      // Older than any publish takes and still without an outcome: the request most likely never
      // reached Kafka (the reclaimer releases it once the consumer has passed the topic's end).
      const stale = view.state !== "ready" ? [] : pendingUsers.filter((userId) =>
        !settled.has(view.pending[userId]!) &&
        view.pendingSince[userId] !== undefined && view.pendingSince[userId] <= view.now - age
      )
      const members = new Set(view.members)
      const drift: Array<Drift> = []
      const add = (kind: Drift["kind"], detail: string, userIds: Iterable<string> = []) =>
        drift.push({ kind, detail, userIds: sample(userIds) })

      if (counts.issuedQuantity !== counts.userCoupons) {
        add(
          "DB_COUNTER_NOT_ROWS",
          `coupons.issued_quantity is ${counts.issuedQuantity} but ${counts.userCoupons} user_coupons exist`
        )
      }
      if (counts.userCoupons > total) add("DB_ISSUED_OVER_TOTAL", `${counts.userCoupons} issued, quantity ${total}`)
      if (view.state === "missing") {
        add("REDIS_STATE_MISSING", "Redis has no state for the coupon; the next request rebuilds it")
      } else if (view.state === "ready") {
        if (Option.isSome(view.total) && view.total.value !== total) {
          add("TOTAL_MISMATCH", `Redis sells ${view.total.value} units, the database has ${total}`)
        }
        if (view.counter !== members.size) {
          add("COUNTER_NOT_SET_SIZE", `counter is ${view.counter} but the set has ${members.size} users`)
        }
        if (view.counter > total) add("RESERVED_OVER_TOTAL", `counter is ${view.counter}, quantity ${total}`)
        const notInRedis = [...issued].filter((userId) => !members.has(userId))
        if (notInRedis.length > 0) {
          add("ISSUED_NOT_IN_REDIS", `${notInRedis.length} issued users are not in the Redis set`, notInRedis)
        }
        const orphans = [...members].filter((userId) => !issued.has(userId) && view.pending[userId] === undefined)
        if (orphans.length > 0) {
          add(
            "RESERVED_WITHOUT_REQUEST",
            `${orphans.length} users hold stock in Redis with no request in flight and no coupon`,
            orphans
          )
        }
        if (stale.length > 0) {
          add(
            "STALE_RESERVATION",
            `${stale.length} requests pending for over ${
              Duration.format(config.reclaimAge)
            } with no outcome in the database: probably never queued`,
            stale
          )
        }
      }
      return Option.some<Report>({
        couponId,
        totalQuantity: total,
        redis: { state: view.state, counter: view.counter, members: members.size, pending: pendingUsers.length },
        db: counts,
        inFlight: pendingUsers.length - lagging.length - stale.length,
        lagging: lagging.length,
        drift,
        consistent: drift.length === 0
      })
    })

    return { check } as const
  })
}) {}
