import { SqlClient } from "@effect/sql/SqlClient"
import { Ids } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { Config } from "./Config.ts"
import { CouponStore } from "./CouponStore.ts"
import { awaitCaughtUp } from "./internal/consumerProgress.ts"
import { type Outcome, type PendingRequest, StockReservations } from "./StockReservations.ts"

/** A rebuild gave up waiting for API replicas that are alive but still publishing requests of the coupon. */
export class ReplicasBusy extends Data.TaggedError("ReplicasBusy")<{
  readonly couponId: Ids.CouponId
  readonly replicas: ReadonlyArray<string>
}> {
  override get message() {
    return `API replicas ${this.replicas.join(", ")} still publish requests of coupon ${this.couponId}`
  }
}

/**
 * Rebuilds a coupon's stock reservations from the database when Redis lost it (a restart without
 * persistence, an eviction, a flush), with any number of API replicas.
 *
 * The database alone is not the truth while a sale runs: requests accepted before the loss may
 * still sit in a replica's publish queue, or in Kafka. So the rebuild
 * (1) closes the coupon (state `recovering`: requests get a typed 503) under a lease, so one replica
 * rebuilds, and announces the rebuild in Redis;
 * (2) waits until every live API replica has answered that it has no request of the coupon left
 * between reservation and Kafka that began before it heard of the rebuild. Each replica registers
 * itself every `REPLICA_HEARTBEAT` for `REPLICA_LEASE`, reads the announcements, waits for its own
 * requests and answers. No reservation succeeds once the coupon is closed, so when all have
 * answered, every request accepted before the close is in Kafka or was rolled back. A replica
 * whose registration expired counts as dead (killed: its unpublished requests were never answered
 * 202; only frozen longer than the lease: what it still publishes is applied like any record, and
 * the database guard never oversells); reservations of it that Redis still holds are released by
 * the `ReservationReclaimer` as `NOT_QUEUED`. A registry that Redis lost with the coupon is only
 * trusted once it is a lease old, so every live replica has registered again;
 * (3) snapshots the end offsets of the requests topic and waits until `coupon-issue-group` has
 * applied everything below them (`awaitCaughtUp`: committed, or claimed in the database), so every
 * request accepted before the coupon closed is in the database;
 * (4) empties the coupon's counter and set, reads the issued users from the database, adds them
 * (and shows them ISSUED), keeps the pending requests the database has no outcome for (each holds
 * its unit until applied or reclaimed) and settles the others (ISSUED, or FAILED: no unit), and
 * (5) reopens the coupon with counter = size of the set. Consumers that issue during the rebuild
 * add their users to the set themselves, so nothing committed is missed.
 */
export class ReservationRecovery extends Effect.Service<ReservationRecovery>()(
  "@kpipe/coupon-service/ReservationRecovery",
  {
    scoped: Effect.gen(function*() {
      const config = yield* Config
      const reservations = yield* StockReservations
      const store = yield* CouponStore
      const admin = yield* Admin.Admin
      const sql = yield* SqlClient
      const replicaId = crypto.randomUUID()
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

      // This replica's side of step (2): the rebuilds it answered (or is answering), coupon → token.
      const answered = new Map<Ids.CouponId, string>()
      const drains = yield* FiberMap.make<Ids.CouponId>()

      /** Waits for this replica's requests of the coupon begun by now (later ones find it closed), then answers. */
      const drain = (couponId: Ids.CouponId, token: string) =>
        Effect.suspend(() => {
          const begun = [...(active.get(couponId) ?? [])]
          return Effect.sync(() => begun.some((id) => active.get(couponId)?.has(id) === true)).pipe(
            Effect.repeat({ while: (busy) => busy, schedule: Schedule.spaced("10 millis") })
          )
        }).pipe(
          Effect.zipRight(reservations.drained(couponId, replicaId, token)),
          Effect.catchAllCause((cause) =>
            Effect.zipRight(
              Effect.logWarning("Answering a rebuild failed; the next heartbeat tries again", cause),
              Effect.sync(() => {
                if (answered.get(couponId) === token) answered.delete(couponId)
              })
            )
          ),
          Effect.annotateLogs({ couponId })
        )

      let failing = false
      const heartbeat = Effect.gen(function*() {
        const rebuilds = yield* reservations.heartbeat(replicaId)
        failing = false
        for (const [couponId, token] of rebuilds) {
          if (answered.get(couponId) === token) continue
          answered.set(couponId, token)
          yield* FiberMap.run(drains, couponId, drain(couponId, token))
        }
        for (const couponId of answered.keys()) {
          if (!rebuilds.has(couponId)) answered.delete(couponId)
        }
      }).pipe(
        Effect.catchAllCause((cause) =>
          failing ? Effect.void : Effect.zipRight(
            Effect.sync(() => {
              failing = true
            }),
            Effect.logWarning("Registering this API replica in Redis failed; retrying every heartbeat", cause)
          )
        )
      )
      yield* heartbeat.pipe(
        Effect.repeat(Schedule.spaced(config.replicaHeartbeat)),
        Effect.annotateLogs({ replicaId }),
        Effect.forkScoped
      )

      /** Step (2): until every live API replica has answered; false when the lease was lost. */
      const replicasDrained = (couponId: Ids.CouponId, token: string) => {
        let waitingFor: ReadonlyArray<string> = []
        let lost = false
        return reservations.awaiting(couponId, token).pipe(
          Effect.tap((awaiting) =>
            Effect.sync(() => {
              if (awaiting._tag === "Waiting") waitingFor = awaiting.replicas
              lost = awaiting._tag === "Lost"
            })
          ),
          Effect.repeat({
            until: (awaiting) =>
              awaiting._tag === "Lost" || (awaiting._tag === "Waiting" && awaiting.replicas.length === 0),
            schedule: Schedule.spaced("20 millis")
          }),
          Effect.map(() => !lost),
          Effect.timeoutFail({
            duration: config.recoveryTimeout,
            onTimeout: () => new ReplicasBusy({ couponId, replicas: waitingFor })
          })
        )
      }

      /**
       * Step (4): the pending requests the reset kept are held (no outcome in the database) or
       * settled as the consumer would have (ISSUED, or FAILED with the unit given back).
       */
      const restorePending = (couponId: Ids.CouponId, token: string, pending: ReadonlyArray<PendingRequest>) =>
        Effect.gen(function*() {
          if (pending.length === 0) return true
          const settled = yield* store.settled(couponId, pending.map(({ eventId }) => eventId))
          const hold = pending.filter(({ eventId }) => !settled.has(eventId))
          if (!(yield* reservations.restorePending(couponId, token, hold))) return false
          yield* reservations.settleAll(pending.flatMap(({ eventId, userId }): Array<Outcome> => {
            const outcome = settled.get(eventId)
            return outcome === undefined ? [] : [{
              couponId,
              userId: Ids.UserId.make(Number(userId)),
              eventId: Ids.EventId.make(eventId),
              issued: outcome === "ISSUED"
            }]
          }))
          return true
        })

      const rebuild = (couponId: Ids.CouponId, token: string) =>
        Effect.gen(function*() {
          yield* Effect.logWarning("Coupon state missing in Redis; rebuilding it from the database")
          const started = Date.now()
          if (!(yield* replicasDrained(couponId, token))) return
          yield* awaitCaughtUp(
            config.topics.issueGroup,
            config.topics.requests.name,
            Duration.max(Duration.subtract(config.recoveryTimeout, Duration.millis(Date.now() - started)), 0)
          ).pipe(Effect.provideService(Admin.Admin, admin), Effect.provideService(SqlClient, sql))
          const coupon = yield* store.find(couponId)
          if (Option.isNone(coupon)) return yield* reservations.abandonRecovery(couponId, token)
          const pending = yield* reservations.resetForRebuild(couponId, token)
          if (Option.isNone(pending)) return
          const users = yield* store.issuedUsers(couponId)
          for (const chunk of Chunk.chunksOf(Chunk.fromIterable(users), 1_000)) {
            if (!(yield* reservations.addIssued(couponId, token, Chunk.toReadonlyArray(chunk)))) return
          }
          if (!(yield* restorePending(couponId, token, pending.value))) return
          const opened = yield* reservations.finishRecovery(couponId, token, coupon.value.totalQuantity)
          if (Option.isSome(opened)) {
            yield* Effect.logInfo("Coupon state rebuilt from the database").pipe(
              Effect.annotateLogs({
                issuedUsers: users.length,
                reserved: opened.value,
                totalQuantity: coupon.value.totalQuantity
              })
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
          Effect.annotateLogs({ couponId, replicaId }),
          Effect.withSpan("ReservationRecovery.recover", { attributes: { couponId } })
        )

      /** Starts rebuilding the coupon in the background, unless this replica already is. */
      const trigger = (couponId: Ids.CouponId) =>
        Effect.sync(() => void runFork(couponId, recover(couponId), { onlyIfMissing: true }))

      return { replicaId, track, trigger } as const
    })
  }
) {}
