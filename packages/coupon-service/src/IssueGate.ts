import { Redis } from "@kpipe/redis"
import type { RedisError } from "@kpipe/redis/Redis"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { CouponConfig } from "./CouponConfig.ts"

/**
 * A coupon's keys. The seed's three (`counter`, `issued:users`, `user:{id}:status`) plus:
 * `meta` (total quantity and `state`: a coupon without it was never opened or was lost),
 * `pending` (user → event id of the request in flight, so rollbacks and releases only ever undo
 * their own reservation) and `recovery` (the lease of the replica rebuilding the coupon).
 *
 * Invariant kept by every script: `counter` = size of `issued:users` = issued + pending users.
 */
export const couponKeys = (prefix: string, couponId: number | string) => {
  const base = `${prefix}${couponId}`
  return {
    meta: `${base}:meta`,
    counter: `${base}:counter`,
    users: `${base}:issued:users`,
    pending: `${base}:pending`,
    lease: `${base}:recovery`,
    status: (userId: number | string) => `${base}:user:${userId}:status`
  }
}

// KEYS: meta, counter, users, pending, status. ARGV: user id, event id, status TTL (s).
const reserveLua = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'MISSING', 0} end
if state ~= 'ready' then return {'RECOVERING', 0} end
local counter = redis.call('GET', KEYS[2])
if not counter then return {'MISSING', 0} end
counter = tonumber(counter)
if redis.call('SCARD', KEYS[3]) ~= counter then return {'MISSING', counter} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'DUPLICATE', counter} end
if counter >= tonumber(redis.call('HGET', KEYS[1], 'total')) then return {'SOLD_OUT', counter} end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('SET', KEYS[5], 'PENDING', 'EX', ARGV[3])
return {'ACCEPTED', counter + 1}
`

// Undoes exactly the reservation of event ARGV[2], if it is still held. KEYS/ARGV as reserve.
const rollbackLua = `
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('SREM', KEYS[3], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECR', KEYS[2])
end
redis.call('DEL', KEYS[5])
return 1
`

// The database issued the coupon: status ISSUED, the request is no longer pending. A user Redis
// did not count (its reservation was rolled back after an ambiguous publish, or Redis was rebuilt
// meanwhile) is adopted, so Redis stops selling that unit again; while the coupon is being rebuilt
// it is only added to the set, whose size becomes the counter when the rebuild finishes.
const markIssuedLua = `
redis.call('SET', KEYS[5], 'ISSUED', 'EX', ARGV[3])
if redis.call('HGET', KEYS[4], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[4], ARGV[1]) end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 1 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'ready' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('INCR', KEYS[2])
  return 2
elseif state == 'recovering' then
  redis.call('SADD', KEYS[3], ARGV[1])
  return 2
end
return 1
`

// The request failed for good: its unit goes back on sale and the user may ask again. A failure
// of a request that no longer holds anything is still made visible, unless the user holds a
// coupon or a newer request.
const releaseLua = `
local pending = redis.call('HGET', KEYS[4], ARGV[1])
if pending == ARGV[2] then
  redis.call('HDEL', KEYS[4], ARGV[1])
  if redis.call('SREM', KEYS[3], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('DECR', KEYS[2])
  end
  redis.call('SET', KEYS[5], 'FAILED', 'EX', ARGV[3])
  return 1
end
if not pending and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  redis.call('SET', KEYS[5], 'FAILED', 'EX', ARGV[3])
  return 2
end
return 0
`

// KEYS: status, pending. ARGV: user id.
const statusLua = `
return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1])}
`

// KEYS: meta, counter, users, pending. ARGV: total. Opens a new coupon: nobody can have asked for
// it yet, so whatever the keys hold (left over from a database that was reset) is discarded.
const initializeLua = `
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'state', 'ready')
redis.call('SET', KEYS[2], 0)
return 1
`

// KEYS: meta, counter, users, lease. ARGV: token, lease (ms).
// Stops the gate (state 'recovering') and takes the lease, unless the coupon is sound or someone
// else holds the lease.
const beginRecoveryLua = `
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'ready' then
  local counter = redis.call('GET', KEYS[2])
  if counter and tonumber(counter) == redis.call('SCARD', KEYS[3]) then return 'READY' end
end
if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'BUSY' end
redis.call('HSET', KEYS[1], 'state', 'recovering')
return 'STARTED'
`

// KEYS: meta, counter, users, pending, lease. ARGV: token.
const resetLua = `
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'recovering')
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1
`

// KEYS: users, lease. ARGV: token, user ids…
const addUsersLua = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
return #ARGV - 1
`

// KEYS: meta, counter, users, lease. ARGV: token, total.
const finishRecoveryLua = `
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
local members = redis.call('SCARD', KEYS[3])
redis.call('SET', KEYS[2], members)
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'state', 'ready')
redis.call('DEL', KEYS[4])
return members
`

// KEYS: lease. ARGV: token.
const abandonLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

// One command per script on the Redis client (`Redis.script`); the names must not clash with Redis's own.
const scriptsOf = Effect.all({
  reserve: Redis.script<[string, number]>({ name: "couponReserve", numberOfKeys: 5, lua: reserveLua }),
  rollback: Redis.script<number>({ name: "couponRollback", numberOfKeys: 5, lua: rollbackLua }),
  markIssued: Redis.script<number>({ name: "couponMarkIssued", numberOfKeys: 5, lua: markIssuedLua }),
  release: Redis.script<number>({ name: "couponRelease", numberOfKeys: 5, lua: releaseLua }),
  status: Redis.script<[string | null, string | null]>({ name: "couponStatus", numberOfKeys: 2, lua: statusLua }),
  initialize: Redis.script<number>({ name: "couponInitialize", numberOfKeys: 4, lua: initializeLua }),
  beginRecovery: Redis.script<"READY" | "BUSY" | "STARTED">({
    name: "couponBeginRecovery",
    numberOfKeys: 4,
    lua: beginRecoveryLua
  }),
  reset: Redis.script<number>({ name: "couponReset", numberOfKeys: 5, lua: resetLua }),
  addUsers: Redis.script<number>({ name: "couponAddUsers", numberOfKeys: 2, lua: addUsersLua }),
  finishRecovery: Redis.script<number>({ name: "couponFinishRecovery", numberOfKeys: 4, lua: finishRecoveryLua }),
  abandon: Redis.script<number>({ name: "couponAbandonRecovery", numberOfKeys: 1, lua: abandonLua })
})

export type ReserveResult =
  | { readonly _tag: "Accepted"; readonly reserved: number }
  | { readonly _tag: "SoldOut" }
  | { readonly _tag: "Duplicate" }
  /** The coupon's state is gone or damaged: it must be rebuilt before anything is accepted. */
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Recovering" }

export type StoredStatus = "PENDING" | "ISSUED" | "FAILED"

export interface GateView {
  readonly state: "ready" | "recovering" | "missing"
  readonly total: Option.Option<number>
  readonly counter: number
  readonly members: ReadonlyArray<string>
  /** User id → event id of the request in flight. */
  readonly pending: Readonly<Record<string, string>>
}

/**
 * The Redis side of a sale. Each operation is one Lua script, so a duplicate never takes stock, two
 * requests never both take the last unit, and a rollback never undoes someone else's reservation.
 */
export class IssueGate extends Effect.Service<IssueGate>()("@kpipe/coupon-service/IssueGate", {
  effect: Effect.gen(function*() {
    const redis = yield* Redis.Redis
    const config = yield* CouponConfig
    const ttl = Math.max(1, Math.round(Duration.toSeconds(config.statusTtl)))
    const keysOf = (couponId: number) => couponKeys(config.keyPrefix, couponId)
    const userKeys = (couponId: number, userId: number) => {
      const keys = keysOf(couponId)
      return [keys.meta, keys.counter, keys.users, keys.pending, keys.status(userId)]
    }
    const scripts = yield* scriptsOf

    // A leaf span (`useSpan`): cheaper than `withSpan`, which also makes the span the parent of what runs inside.
    const reserve = (couponId: number, userId: number, eventId: string): Effect.Effect<ReserveResult, RedisError> =>
      Effect.useSpan(
        "IssueGate.reserve",
        { attributes: { couponId, userId }, captureStackTrace: false },
        () => scripts.reserve(userKeys(couponId, userId), [userId, eventId, ttl])
      ).pipe(
        Effect.map(([answer, count]): ReserveResult => {
          switch (answer) {
            case "ACCEPTED":
              return { _tag: "Accepted", reserved: count }
            case "SOLD_OUT":
              return { _tag: "SoldOut" }
            case "DUPLICATE":
              return { _tag: "Duplicate" }
            case "RECOVERING":
              return { _tag: "Recovering" }
            default:
              return { _tag: "Missing" }
          }
        })
      )

    const rollback = (couponId: number, userId: number, eventId: string) =>
      scripts.rollback(userKeys(couponId, userId), [userId, eventId]).pipe(
        Effect.map((n) => n === 1),
        Effect.withSpan("IssueGate.rollback", { attributes: { couponId, userId } })
      )

    const markIssued = (couponId: number, userId: number, eventId: string) =>
      scripts.markIssued(userKeys(couponId, userId), [userId, eventId, ttl]).pipe(
        Effect.asVoid,
        Effect.withSpan("IssueGate.markIssued", { attributes: { couponId, userId } })
      )

    /** `released`: the reservation went back on sale; `marked`: nothing was held, FAILED shown; `untouched`. */
    const release = (couponId: number, userId: number, eventId: string) =>
      scripts.release(userKeys(couponId, userId), [userId, eventId, ttl]).pipe(
        Effect.map((n) => n === 1 ? "released" as const : n === 2 ? "marked" as const : "untouched" as const),
        Effect.withSpan("IssueGate.release", { attributes: { couponId, userId } })
      )

    /**
     * What the database decided for a batch of requests, in one round trip: `issued` ones are marked
     * ISSUED (as `markIssued`), the others released (as `release`).
     */
    const settleAll = (
      outcomes: ReadonlyArray<
        { readonly couponId: number; readonly userId: number; readonly eventId: string; readonly issued: boolean }
      >
    ) =>
      outcomes.length === 0 ? Effect.void : redis.pipeline((pipeline) => {
        for (const { couponId, eventId, issued, userId } of outcomes) {
          ;(issued ? scripts.markIssued : scripts.release).queue(pipeline, userKeys(couponId, userId), [
            userId,
            eventId,
            ttl
          ])
        }
      }).pipe(Effect.asVoid, Effect.withSpan("IssueGate.settleAll", { attributes: { requests: outcomes.length } }))

    const status = (couponId: number, userId: number) => {
      const keys = keysOf(couponId)
      return scripts.status([keys.status(userId), keys.pending], [userId]).pipe(
        Effect.map(([status, pending]) => {
          return {
            status: Option.fromNullable(status as StoredStatus | null),
            pendingEventId: Option.fromNullable(pending)
          }
        }),
        Effect.withSpan("IssueGate.status", { attributes: { couponId, userId }, captureStackTrace: false })
      )
    }

    const initialize = (couponId: number, total: number) => {
      const keys = keysOf(couponId)
      return scripts.initialize([keys.meta, keys.counter, keys.users, keys.pending], [total]).pipe(
        Effect.asVoid,
        Effect.withSpan("IssueGate.initialize", { attributes: { couponId } })
      )
    }

    const beginRecovery = (couponId: number, token: string, lease: Duration.Duration) => {
      const keys = keysOf(couponId)
      return scripts.beginRecovery([keys.meta, keys.counter, keys.users, keys.lease], [
        token,
        Math.round(Duration.toMillis(lease))
      ])
    }

    /** Empties the counter, the set and the pending requests under the lease; false if the lease was lost. */
    const resetForRebuild = (couponId: number, token: string) => {
      const keys = keysOf(couponId)
      return scripts.reset([keys.meta, keys.counter, keys.users, keys.pending, keys.lease], [token]).pipe(
        Effect.map((n) => n === 1)
      )
    }

    /** Adds issued users to the set under the lease, and shows them ISSUED; false if the lease was lost. */
    const addIssued = (couponId: number, token: string, userIds: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const keys = keysOf(couponId)
        const added = yield* scripts.addUsers([keys.users, keys.lease], [token, ...userIds])
        if (added === -1) return false
        yield* redis.use((client) => {
          const pipeline = client.pipeline()
          for (const userId of userIds) pipeline.set(keys.status(userId), "ISSUED", "EX", ttl)
          return pipeline.exec()
        })
        return true
      })

    /** Opens the gate again with counter = set size; the number of users, or none if the lease was lost. */
    const finishRecovery = (couponId: number, token: string, total: number) => {
      const keys = keysOf(couponId)
      return scripts.finishRecovery([keys.meta, keys.counter, keys.users, keys.lease], [token, total]).pipe(
        Effect.map((n) => n === -1 ? Option.none<number>() : Option.some(n))
      )
    }

    const abandonRecovery = (couponId: number, token: string) =>
      scripts.abandon([keysOf(couponId).lease], [token]).pipe(Effect.asVoid)

    const inspect = (couponId: number) =>
      redis.use(async (client): Promise<GateView> => {
        const keys = keysOf(couponId)
        const [meta, counter, members, pending] = await Promise.all([
          client.hgetall(keys.meta),
          client.get(keys.counter),
          client.smembers(keys.users),
          client.hgetall(keys.pending)
        ])
        return {
          state: meta["state"] === "ready" ? "ready" : meta["state"] === "recovering" ? "recovering" : "missing",
          total: meta["total"] === undefined ? Option.none() : Option.some(Number(meta["total"])),
          counter: counter === null ? 0 : Number(counter),
          members,
          pending
        }
      }).pipe(Effect.withSpan("IssueGate.inspect", { attributes: { couponId } }))

    return {
      reserve,
      rollback,
      markIssued,
      release,
      settleAll,
      status,
      initialize,
      beginRecovery,
      resetForRebuild,
      addIssued,
      finishRecovery,
      abandonRecovery,
      inspect
    } as const
  })
}) {}
