import { Redis } from "@kpipe/redis"
import type { RedisError } from "@kpipe/redis/Redis"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ChainableCommander } from "ioredis"

/**
 * A coupon's keys. The seed's three (`counter`, `issued:users`, `user:{id}:status`) plus:
 * `meta` (total quantity and `state`: a coupon without it was never opened or was lost),
 * `pending` (user → event id of the request in flight, so rollbacks and releases only ever undo
 * their own reservation), `pending:since` (user → when Redis accepted that request, in Redis's own
 * clock, ms: what the reclaimer looks for), `recovery` (the lease of the replica rebuilding the coupon),
 * `drained` (API replica → the rebuild token it answered: it has no request of the coupon left
 * between its reservation and Kafka) and `cancelled:{eventId}` (a request whose reserve got no
 * answer and was cancelled: a reserve of it arriving late takes nothing). `server` is shared by
 * every coupon: the `run_id` of the Redis server answering, written by every API replica's heartbeat;
 * `meta` keeps the one its state was built on, so a state that server did not build (restored from a
 * snapshot, or a replica promoted by a failover, consistent but possibly older) is rebuilt before it sells.
 *
 * Invariants kept by every script: `counter` = size of `issued:users` = issued + pending users;
 * `pending:since` has exactly the users of `pending`.
 */
export const couponKeys = (prefix: string, couponId: number | string) => {
  const base = `${prefix}${couponId}`
  return {
    meta: `${base}:meta`,
    counter: `${base}:counter`,
    users: `${base}:issued:users`,
    pending: `${base}:pending`,
    since: `${base}:pending:since`,
    lease: `${base}:recovery`,
    drained: `${base}:drained`,
    status: (userId: number | string) => `${base}:user:${userId}:status`,
    cancelled: (eventId: string) => `${base}:cancelled:${eventId}`,
    server: `${prefix}redis-server`
  }
}

/**
 * The keys every coupon under `prefix` shares: `api-replicas` (API replica id → until when its
 * registration holds, ms on Redis's clock; `@since`: when the hash was created, so a registry younger
 * than a replica lease may still miss live replicas) and `rebuilds` (coupon id → token of the rebuild
 * waiting for the replicas).
 */
export const sharedKeys = (prefix: string) => ({
  replicas: `${prefix}api-replicas`,
  rebuilds: `${prefix}rebuilds`,
  server: `${prefix}redis-server`
})

export type SharedKeys = ReturnType<typeof sharedKeys>

// The answering server's run_id: new at every start, and a promoted replica's differs from its primary's.
const serverIdLua = `local function serverId() return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') end`

// Redis's clock in ms: every replica's reservations and the reclaimer's cutoff are on the same clock.
const nowLua = `local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)`

// KEYS: meta, counter, users, pending, status, since, cancelled, server. ARGV: user id, event id, status
// TTL (s). The same event again (a reserve sent twice) is answered as the first time; a cancelled one
// takes nothing; a state another server built is MISSING (rebuilt first).
const reserveLua = `
if redis.call('EXISTS', KEYS[7]) == 1 then return {'CANCELLED', 0} end
if redis.call('HGET', KEYS[4], ARGV[1]) == ARGV[2] then
  return {'ACCEPTED', tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'MISSING', 0} end
if state ~= 'ready' then return {'RECOVERING', 0} end
local server = redis.call('GET', KEYS[8])
if server and redis.call('HGET', KEYS[1], 'server') ~= server then return {'MISSING', 0} end
local counter = redis.call('GET', KEYS[2])
if not counter then return {'MISSING', 0} end
counter = tonumber(counter)
if redis.call('SCARD', KEYS[3]) ~= counter then return {'MISSING', counter} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'DUPLICATE', counter} end
if counter >= tonumber(redis.call('HGET', KEYS[1], 'total')) then return {'SOLD_OUT', counter} end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[6], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
redis.call('SET', KEYS[5], 'PENDING', 'EX', ARGV[3])
return {'ACCEPTED', counter + 1}
`

// Undoes exactly the reservation of event ARGV[2], if it is still held. KEYS as reserve. ARGV: user
// id, event id, and how long (s) a reserve of the event arriving later must take nothing (0: it cannot).
const rollbackLua = `
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[7], '1', 'EX', ARGV[3]) end
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
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
if redis.call('HGET', KEYS[4], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
end
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
  redis.call('ZREM', KEYS[6], ARGV[1])
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

// KEYS: pending, since. ARGV: cutoff (ms, Redis clock), limit. The requests Redis accepted at or
// before the cutoff that are still pending: {user id, event id, …}.
const staleLua = `
local users = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local found = {}
for _, user in ipairs(users) do
  local event = redis.call('HGET', KEYS[1], user)
  if event then
    found[#found + 1] = user
    found[#found + 1] = event
  end
end
return found
`

// KEYS: meta, counter, users, pending, since. ARGV: total. Opens a new coupon: nobody can have asked for
// it yet, so whatever the keys hold (left over from a database that was reset) is discarded.
const initializeLua = `
${serverIdLua}
local server = serverId()
redis.call('SET', KEYS[6], server)
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'state', 'ready', 'server', server)
redis.call('SET', KEYS[2], 0)
return 1
`

// KEYS: meta, counter, users, lease, rebuilds, drained, server. ARGV: token, lease (ms), coupon id.
// Closes the coupon (state 'recovering') and takes the lease, unless the coupon is sound (built by the
// server answering, its counter its set's size) or someone else holds the lease; the rebuild is
// announced to the API replicas, which answer in 'drained'.
const beginRecoveryLua = `
local state = redis.call('HGET', KEYS[1], 'state')
local server = redis.call('GET', KEYS[7])
if state == 'ready' and (not server or redis.call('HGET', KEYS[1], 'server') == server) then
  local counter = redis.call('GET', KEYS[2])
  if counter and tonumber(counter) == redis.call('SCARD', KEYS[3]) then return 'READY' end
end
if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'BUSY' end
redis.call('HSET', KEYS[1], 'state', 'recovering')
redis.call('DEL', KEYS[6])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[1])
return 'STARTED'
`

// KEYS: replicas, rebuilds, server. ARGV: replica id, replica lease (ms). Renews the replica's
// registration, forgets replicas expired for a whole lease, notes the server answering, and returns
// the rebuilds waiting: {coupon id, token, …}.
const heartbeatLua = `
${serverIdLua}
redis.call('SET', KEYS[3], serverId())
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[2])
redis.call('HSETNX', KEYS[1], '@since', now)
redis.call('HSET', KEYS[1], ARGV[1], now + lease)
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= '@since' and tonumber(all[i + 1]) < now - lease then redis.call('HDEL', KEYS[1], all[i]) end
end
return redis.call('HGETALL', KEYS[2])
`

// KEYS: lease, drained, rebuilds. ARGV: replica id, token, coupon id. The replica has nothing of the
// coupon left between reservation and Kafka that began before it heard of rebuild ARGV[2]. 0 when
// that rebuild is over (its announcement is then withdrawn).
const drainedLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[3], ARGV[3]) end
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
return 1
`

// KEYS: replicas, drained, lease. ARGV: token, replica lease (ms). {'LOST'}: the lease is gone;
// {'YOUNG'}: the registry is younger than a replica lease (Redis lost it), so a live replica may not
// be in it yet; else {'WAITING', replica ids…}: the live replicas that have not drained yet.
const awaitingLua = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'LOST'} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local since = redis.call('HGET', KEYS[1], '@since')
if not since or now - tonumber(since) < tonumber(ARGV[2]) then return {'YOUNG'} end
local waiting = {'WAITING'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= '@since' and tonumber(all[i + 1]) >= now and redis.call('HGET', KEYS[2], all[i]) ~= ARGV[1] then
    waiting[#waiting + 1] = all[i]
  end
end
return waiting
`

// KEYS: meta, counter, users, pending, lease, since. ARGV: token. Empties the counter and the set;
// the pending requests stay (returned: {user id, event id, …}) for the rebuild to settle or hold.
const resetLua = `
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'state', 'recovering')
redis.call('DEL', KEYS[2], KEYS[3])
return redis.call('HGETALL', KEYS[4])
`

// KEYS: users, pending, lease. ARGV: token, then pairs (user id, event id) to hold: each takes its unit
// again. A user whose pending event changed meanwhile is left alone.
const restorePendingLua = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then redis.call('SADD', KEYS[1], ARGV[i]) end
end
return 1
`

// KEYS: users, lease. ARGV: token, user ids…
const addUsersLua = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
return #ARGV - 1
`

// KEYS: meta, counter, users, lease, rebuilds, drained, server. ARGV: token, total, coupon id.
const finishRecoveryLua = `
${serverIdLua}
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
local server = serverId()
redis.call('SET', KEYS[7], server)
local members = redis.call('SCARD', KEYS[3])
redis.call('SET', KEYS[2], members)
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'state', 'ready', 'server', server)
redis.call('DEL', KEYS[4], KEYS[6])
if redis.call('HGET', KEYS[5], ARGV[3]) == ARGV[1] then redis.call('HDEL', KEYS[5], ARGV[3]) end
return members
`

// KEYS: lease, rebuilds, drained. ARGV: token, coupon id.
const abandonLua = `
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[3]) end
return 0
`

export type CouponKeys = ReturnType<typeof couponKeys>

/** A user's request in flight, as the `pending` hash holds it. */
export interface PendingPair {
  readonly userId: string
  readonly eventId: string
}

export type ReserveResult =
  | { readonly _tag: "Accepted"; readonly reserved: number }
  | { readonly _tag: "SoldOut" }
  | { readonly _tag: "Duplicate" }
  /** The coupon's state is gone or damaged: it must be rebuilt before anything is accepted. */
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Recovering" }
  /** The request was cancelled (`rollback` with `cancelFor`) before this reserve of it ran. */
  | { readonly _tag: "Cancelled" }

// One command per script on the Redis client (`Redis.script`); the names must not clash with Redis's own.
const define = Effect.all({
  now: Redis.script<number>({ name: "couponNow", numberOfKeys: 0, lua: nowLua }),
  reserve: Redis.script<[string, number]>({ name: "couponReserve", numberOfKeys: 8, lua: reserveLua }),
  rollback: Redis.script<number>({ name: "couponRollback", numberOfKeys: 7, lua: rollbackLua }),
  markIssued: Redis.script<number>({ name: "couponMarkIssued", numberOfKeys: 6, lua: markIssuedLua }),
  release: Redis.script<number>({ name: "couponRelease", numberOfKeys: 6, lua: releaseLua }),
  stale: Redis.script<Array<string>>({ name: "couponStale", numberOfKeys: 2, lua: staleLua }),
  status: Redis.script<[string | null, string | null]>({ name: "couponStatus", numberOfKeys: 2, lua: statusLua }),
  initialize: Redis.script<number>({ name: "couponInitialize", numberOfKeys: 6, lua: initializeLua }),
  beginRecovery: Redis.script<"READY" | "BUSY" | "STARTED">({
    name: "couponBeginRecovery",
    numberOfKeys: 7,
    lua: beginRecoveryLua
  }),
  heartbeat: Redis.script<Array<string>>({ name: "couponReplicaHeartbeat", numberOfKeys: 3, lua: heartbeatLua }),
  drained: Redis.script<number>({ name: "couponReplicaDrained", numberOfKeys: 3, lua: drainedLua }),
  awaiting: Redis.script<Array<string>>({ name: "couponRebuildAwaiting", numberOfKeys: 3, lua: awaitingLua }),
  reset: Redis.script<Array<string> | null>({ name: "couponReset", numberOfKeys: 6, lua: resetLua }),
  restorePending: Redis.script<number>({ name: "couponRestorePending", numberOfKeys: 3, lua: restorePendingLua }),
  addUsers: Redis.script<number>({ name: "couponAddUsers", numberOfKeys: 2, lua: addUsersLua }),
  finishRecovery: Redis.script<number>({ name: "couponFinishRecovery", numberOfKeys: 7, lua: finishRecoveryLua }),
  abandon: Redis.script<number>({ name: "couponAbandonRecovery", numberOfKeys: 3, lua: abandonLua })
})

// Answers without data, shared by every request.
const soldOut: ReserveResult = { _tag: "SoldOut" }
const duplicate: ReserveResult = { _tag: "Duplicate" }
const recovering: ReserveResult = { _tag: "Recovering" }
const missing: ReserveResult = { _tag: "Missing" }
const cancelled: ReserveResult = { _tag: "Cancelled" }

const reserveResult = ([answer, count]: [string, number]): ReserveResult => {
  switch (answer) {
    case "ACCEPTED":
      return { _tag: "Accepted", reserved: count }
    case "SOLD_OUT":
      return soldOut
    case "DUPLICATE":
      return duplicate
    case "RECOVERING":
      return recovering
    case "CANCELLED":
      return cancelled
    default:
      return missing
  }
}

const userKeys = (keys: CouponKeys, userId: number) => [
  keys.meta,
  keys.counter,
  keys.users,
  keys.pending,
  keys.status(userId),
  keys.since
]

const requestKeys = (keys: CouponKeys, userId: number, eventId: string) => [
  ...userKeys(keys, userId),
  keys.cancelled(eventId)
]

// The keys of beginRecovery and finishRecovery.
const rebuildKeys = (keys: CouponKeys, shared: SharedKeys) => [
  keys.meta,
  keys.counter,
  keys.users,
  keys.lease,
  shared.rebuilds,
  keys.drained,
  shared.server
]

/** The scripts on this Redis client, each taking a coupon's keys and returning what its answer means. */
export const make = Effect.gen(function*() {
  const scripts = yield* define
  return {
    reserve: (
      keys: CouponKeys,
      userId: number,
      eventId: string,
      ttl: number
    ): Effect.Effect<ReserveResult, RedisError> =>
      Effect.map(
        scripts.reserve([...requestKeys(keys, userId, eventId), keys.server], [userId, eventId, ttl]),
        (reply) => reserveResult(reply)
      ),
    /** `cancelFor` (s): how long a reserve of the event arriving later takes nothing (0: none can arrive). */
    rollback: (keys: CouponKeys, userId: number, eventId: string, cancelFor: number) =>
      Effect.map(scripts.rollback(requestKeys(keys, userId, eventId), [userId, eventId, cancelFor]), (n) => n === 1),
    markIssued: (keys: CouponKeys, userId: number, eventId: string, ttl: number) =>
      Effect.asVoid(scripts.markIssued(userKeys(keys, userId), [userId, eventId, ttl])),
    release: (keys: CouponKeys, userId: number, eventId: string, ttl: number) =>
      Effect.map(
        scripts.release(userKeys(keys, userId), [userId, eventId, ttl]),
        (n) => n === 1 ? "released" as const : n === 2 ? "marked" as const : "untouched" as const
      ),
    /** Queues `markIssued` (issued) or `release` on a pipeline. */
    queueSettle: (
      pipeline: ChainableCommander,
      keys: CouponKeys,
      request: { readonly userId: number; readonly eventId: string; readonly issued: boolean },
      ttl: number
    ) =>
      (request.issued ? scripts.markIssued : scripts.release).queue(pipeline, userKeys(keys, request.userId), [
        request.userId,
        request.eventId,
        ttl
      ]),
    /** Redis's clock, ms. */
    now: scripts.now([]),
    /** Requests accepted at or before `cutoff` (ms, Redis's clock) and still pending, up to `limit`. */
    stale: (keys: CouponKeys, cutoff: number, limit: number) =>
      Effect.map(scripts.stale([keys.pending, keys.since], [cutoff, limit]), (reply) => {
        const found: Array<{ readonly userId: string; readonly eventId: string }> = []
        for (let i = 0; i + 1 < reply.length; i += 2) found.push({ userId: reply[i]!, eventId: reply[i + 1]! })
        return found
      }),
    status: (keys: CouponKeys, userId: number) =>
      Effect.map(scripts.status([keys.status(userId), keys.pending], [userId]), ([status, pending]) => ({
        status: Option.fromNullable(status),
        pendingEventId: Option.fromNullable(pending)
      })),
    initialize: (keys: CouponKeys, total: number) =>
      Effect.asVoid(
        scripts.initialize([keys.meta, keys.counter, keys.users, keys.pending, keys.since, keys.server], [total])
      ),
    beginRecovery: (keys: CouponKeys, shared: SharedKeys, couponId: number, token: string, leaseMillis: number) =>
      scripts.beginRecovery(rebuildKeys(keys, shared), [
        token,
        leaseMillis,
        couponId
      ]),
    /** Renews the replica's registration; the rebuilds waiting, coupon id → token. */
    heartbeat: (shared: SharedKeys, replicaId: string, leaseMillis: number) =>
      Effect.map(
        scripts.heartbeat([shared.replicas, shared.rebuilds, shared.server], [replicaId, leaseMillis]),
        (reply) => {
          const rebuilds = new Map<string, string>()
          for (let i = 0; i + 1 < reply.length; i += 2) rebuilds.set(reply[i]!, reply[i + 1]!)
          return rebuilds
        }
      ),
    drained: (keys: CouponKeys, shared: SharedKeys, couponId: number, replicaId: string, token: string) =>
      Effect.map(
        scripts.drained([keys.lease, keys.drained, shared.rebuilds], [replicaId, token, couponId]),
        (n) => n === 1
      ),
    awaiting: (keys: CouponKeys, shared: SharedKeys, token: string, leaseMillis: number) =>
      Effect.map(
        scripts.awaiting([shared.replicas, keys.drained, keys.lease], [token, leaseMillis]),
        (reply) =>
          reply[0] === "LOST"
            ? { _tag: "Lost" as const }
            : reply[0] === "YOUNG"
            ? { _tag: "RegistryYoung" as const }
            : { _tag: "Waiting" as const, replicas: reply.slice(1) }
      ),
    /** The pending requests the reset kept, or none if the lease was lost. */
    reset: (keys: CouponKeys, token: string) =>
      Effect.map(
        scripts.reset([keys.meta, keys.counter, keys.users, keys.pending, keys.lease, keys.since], [token]),
        (reply) => {
          if (reply === null) return Option.none<ReadonlyArray<PendingPair>>()
          const pending: Array<PendingPair> = []
          for (let i = 0; i + 1 < reply.length; i += 2) pending.push({ userId: reply[i]!, eventId: reply[i + 1]! })
          return Option.some<ReadonlyArray<PendingPair>>(pending)
        }
      ),
    restorePending: (keys: CouponKeys, token: string, hold: ReadonlyArray<PendingPair>) =>
      Effect.map(
        scripts.restorePending([keys.users, keys.pending, keys.lease], [
          token,
          ...hold.flatMap(({ eventId, userId }) => [userId, eventId])
        ]),
        (n) => n === 1
      ),
    addUsers: (keys: CouponKeys, token: string, userIds: ReadonlyArray<string>) =>
      Effect.map(scripts.addUsers([keys.users, keys.lease], [token, ...userIds]), (n) => n !== -1),
    finishRecovery: (keys: CouponKeys, shared: SharedKeys, couponId: number, token: string, total: number) =>
      Effect.map(
        scripts.finishRecovery(rebuildKeys(keys, shared), [
          token,
          total,
          couponId
        ]),
        (n) => n === -1 ? Option.none<number>() : Option.some(n)
      ),
    abandon: (keys: CouponKeys, shared: SharedKeys, couponId: number, token: string) =>
      Effect.asVoid(scripts.abandon([keys.lease, shared.rebuilds, keys.drained], [token, couponId]))
  } as const
})
