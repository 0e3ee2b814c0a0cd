import { Ids } from "@kpipe/events"
import { Redis } from "@kpipe/redis"
import type { RedisError } from "@kpipe/redis/Redis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Config } from "./Config.ts"
import * as internal from "./internal/reservationScripts.ts"

/** A coupon's Redis keys under `prefix` (`REDIS_KEY_PREFIX`); see `internal/reservationScripts.ts` for the layout. */
export const couponKeys = internal.couponKeys

export type ReserveResult = internal.ReserveResult

/** What a rebuild waiting for the API replicas sees (`StockReservations.awaiting`). */
export type Awaiting =
  /** The rebuild's lease is gone (it expired, or Redis lost it): the rebuild must stop. */
  | { readonly _tag: "Lost" }
  /** The replicas' registry is younger than a replica lease: a live replica may not be in it yet. */
  | { readonly _tag: "RegistryYoung" }
  /** The live replicas that have not answered the rebuild yet (none: every one has drained). */
  | { readonly _tag: "Waiting"; readonly replicas: ReadonlyArray<string> }

export type StoredStatus = "PENDING" | "ISSUED" | "FAILED"

/** A coupon's reservations as Redis holds them (the reconciliation report compares them with the database). */
export interface ReservationsView {
  readonly state: "ready" | "recovering" | "missing"
  readonly total: Option.Option<number>
  readonly counter: number
  readonly members: ReadonlyArray<string>
  /** User id → event id of the request in flight. */
  readonly pending: Readonly<Record<string, string>>
  /** User id → when Redis accepted the request in flight (ms, Redis's clock). */
  readonly pendingSince: Readonly<Record<string, number>>
  /** Redis's clock when the view was read (ms). */
  readonly now: number
}

/** A request Redis still holds a unit for. */
export interface PendingRequest {
  readonly userId: string
  readonly eventId: string
}

/** What the database decided for one request. */
export interface Outcome {
  readonly couponId: Ids.CouponId
  readonly userId: Ids.UserId
  readonly eventId: Ids.EventId
  readonly issued: boolean
}

/**
 * A coupon's stock in Redis: who holds a unit (issued or in flight) and how many are left. Each
 * operation is one Lua script, so a duplicate never takes stock, two requests never both take the
 * last unit, and a rollback never undoes someone else's reservation.
 */
export class StockReservations extends Effect.Service<StockReservations>()(
  "@kpipe/coupon-service/StockReservations",
  {
    effect: Effect.gen(function*() {
      const redis = yield* Redis.Redis
      const config = yield* Config
      const scripts = yield* internal.make
      const ttl = Math.max(1, Math.round(Duration.toSeconds(config.statusTtl)))
      const keysOf = (couponId: Ids.CouponId) => couponKeys(config.keyPrefix, couponId)
      const shared = internal.sharedKeys(config.keyPrefix)
      const replicaLease = Math.round(Duration.toMillis(config.replicaLease))
      // A reservation made later than this without a request in Kafka is the reclaimer's anyway.
      const cancelFor = Math.max(1, Math.round(Duration.toSeconds(config.reclaimAge)))

      // A leaf span (`useSpan`): cheaper than `withSpan`, which also makes the span the parent of what runs inside.
      const reserve = (couponId: Ids.CouponId, userId: Ids.UserId, eventId: Ids.EventId) =>
        Effect.useSpan(
          "StockReservations.reserve",
          { attributes: { couponId, userId }, captureStackTrace: false },
          () => scripts.reserve(keysOf(couponId), userId, eventId, ttl)
        )

      /** Undoes the reservation of a request whose reserve was answered; true if it was still held. */
      const rollback = (couponId: Ids.CouponId, userId: Ids.UserId, eventId: Ids.EventId) =>
        scripts.rollback(keysOf(couponId), userId, eventId, 0).pipe(
          Effect.withSpan("StockReservations.rollback", { attributes: { couponId, userId } })
        )

      /**
       * Undoes the reservation of a request whose reserve got no answer: whether it ran, runs later
       * (for up to `RESERVATION_RECLAIM_AGE`) or never, the request holds nothing.
       */
      const cancel = (couponId: Ids.CouponId, userId: Ids.UserId, eventId: Ids.EventId) =>
        scripts.rollback(keysOf(couponId), userId, eventId, cancelFor).pipe(
          Effect.withSpan("StockReservations.cancel", { attributes: { couponId, userId } })
        )

      /** The database issued it: status ISSUED, no longer pending (a user Redis did not count is adopted). */
      const markIssued = (couponId: Ids.CouponId, userId: Ids.UserId, eventId: string) =>
        scripts.markIssued(keysOf(couponId), userId, eventId, ttl).pipe(
          Effect.withSpan("StockReservations.markIssued", { attributes: { couponId, userId } })
        )

      /** `released`: the reservation went back on sale; `marked`: nothing was held, FAILED shown; `untouched`. */
      const release = (couponId: Ids.CouponId, userId: Ids.UserId, eventId: string) =>
        scripts.release(keysOf(couponId), userId, eventId, ttl).pipe(
          Effect.withSpan("StockReservations.release", { attributes: { couponId, userId } })
        )

      /** What the database decided for a batch of requests, in one round trip: `markIssued` or `release` each. */
      const settleAll = (outcomes: ReadonlyArray<Outcome>) =>
        outcomes.length === 0 ? Effect.void : redis.pipeline((pipeline) => {
          for (const outcome of outcomes) scripts.queueSettle(pipeline, keysOf(outcome.couponId), outcome, ttl)
        }).pipe(
          Effect.asVoid,
          Effect.withSpan("StockReservations.settleAll", { attributes: { requests: outcomes.length } })
        )

      /** Redis's clock (ms): when reservations are made is on it, whichever replica made them. */
      const now = scripts.now

      /** Requests accepted at or before `cutoff` (ms, Redis's clock) still pending, up to `limit`. */
      const stale = (couponId: Ids.CouponId, cutoff: number, limit: number) =>
        scripts.stale(keysOf(couponId), cutoff, limit).pipe(
          Effect.withSpan("StockReservations.stale", { attributes: { couponId } })
        )

      const status = (couponId: Ids.CouponId, userId: Ids.UserId) =>
        scripts.status(keysOf(couponId), userId).pipe(
          Effect.map(({ pendingEventId, status }) => ({
            status: status as Option.Option<StoredStatus>,
            pendingEventId
          })),
          Effect.withSpan("StockReservations.status", { attributes: { couponId, userId }, captureStackTrace: false })
        )

      /** Opens a new coupon with `total` units; whatever its keys held is discarded. */
      const initialize = (couponId: Ids.CouponId, total: number) =>
        scripts.initialize(keysOf(couponId), total).pipe(
          Effect.withSpan("StockReservations.initialize", { attributes: { couponId } })
        )

      /**
       * Closes the coupon (state `recovering`) and takes the rebuild lease, unless it is sound or
       * leased; the rebuild is announced to the API replicas (`heartbeat`).
       */
      const beginRecovery = (couponId: Ids.CouponId, token: string, lease: Duration.Duration) =>
        scripts.beginRecovery(keysOf(couponId), shared, couponId, token, Math.round(Duration.toMillis(lease)))

      /**
       * Renews this API replica's registration for `REPLICA_LEASE`; the rebuilds waiting for the
       * replicas, coupon id → token.
       */
      const heartbeat = (replicaId: string) =>
        scripts.heartbeat(shared, replicaId, replicaLease).pipe(
          Effect.map((rebuilds) =>
            new Map([...rebuilds].map(([couponId, token]) => [Ids.CouponId.make(Number(couponId)), token] as const))
          )
        )

      /**
       * Tells rebuild `token` that this replica has no request of the coupon left between reservation
       * and Kafka (begun before it heard of the rebuild); false when that rebuild is over.
       */
      const drained = (couponId: Ids.CouponId, replicaId: string, token: string) =>
        scripts.drained(keysOf(couponId), shared, couponId, replicaId, token)

      /** Which live API replicas rebuild `token` still waits for. */
      const awaiting = (couponId: Ids.CouponId, token: string): Effect.Effect<Awaiting, RedisError> =>
        scripts.awaiting(keysOf(couponId), shared, token, replicaLease)

      /**
       * Empties the counter and the set under the lease; the pending requests stay and are returned
       * (none if the lease was lost), for `restorePending`.
       */
      const resetForRebuild = (couponId: Ids.CouponId, token: string) => scripts.reset(keysOf(couponId), token)

      /**
       * Under the lease: each of `hold` (pending, with no outcome in the database) takes its unit
       * again, until its record is applied or the reclaimer fails it (`NOT_QUEUED`). False if the
       * lease was lost.
       */
      const restorePending = (couponId: Ids.CouponId, token: string, hold: ReadonlyArray<PendingRequest>) =>
        scripts.restorePending(keysOf(couponId), token, hold)

      /** Adds issued users to the set under the lease, and shows them ISSUED; false if the lease was lost. */
      const addIssued = (couponId: Ids.CouponId, token: string, userIds: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const keys = keysOf(couponId)
          if (!(yield* scripts.addUsers(keys, token, userIds))) return false
          yield* redis.pipeline((pipeline) => {
            for (const userId of userIds) pipeline.set(keys.status(userId), "ISSUED", "EX", ttl)
          })
          return true
        })

      /** Opens the coupon again with counter = set size; the number of users, or none if the lease was lost. */
      const finishRecovery = (couponId: Ids.CouponId, token: string, total: number) =>
        scripts.finishRecovery(keysOf(couponId), shared, couponId, token, total)

      const abandonRecovery = (couponId: Ids.CouponId, token: string) =>
        scripts.abandon(keysOf(couponId), shared, couponId, token)

      const inspect = (couponId: Ids.CouponId) =>
        redis.use(async (client): Promise<ReservationsView> => {
          const keys = keysOf(couponId)
          const [meta, counter, members, pending, since, time] = await Promise.all([
            client.hgetall(keys.meta),
            client.get(keys.counter),
            client.smembers(keys.users),
            client.hgetall(keys.pending),
            client.zrange(keys.since, 0, -1, "WITHSCORES"),
            client.time()
          ])
          const pendingSince: Record<string, number> = {}
          for (let i = 0; i + 1 < since.length; i += 2) pendingSince[since[i]!] = Number(since[i + 1])
          return {
            state: meta["state"] === "ready" ? "ready" : meta["state"] === "recovering" ? "recovering" : "missing",
            total: meta["total"] === undefined ? Option.none() : Option.some(Number(meta["total"])),
            counter: counter === null ? 0 : Number(counter),
            members,
            pending,
            pendingSince,
            now: Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000)
          }
        }).pipe(Effect.withSpan("StockReservations.inspect", { attributes: { couponId } }))

      return {
        reserve,
        rollback,
        cancel,
        markIssued,
        release,
        settleAll,
        now,
        stale,
        status,
        initialize,
        beginRecovery,
        heartbeat,
        drained,
        awaiting,
        resetForRebuild,
        restorePending,
        addIssued,
        finishRecovery,
        abandonRecovery,
        inspect
      } as const
    })
  }
) {}

/** The Redis the reservations live in (`REDIS_URL`, auto-pipelined; `REDIS_COMMAND_TIMEOUT`). */
export const layerRedis = Layer.unwrapEffect(
  Effect.map(Config, (config) => Redis.layer({ url: config.redisUrl, commandTimeout: config.redisCommandTimeout }))
)
