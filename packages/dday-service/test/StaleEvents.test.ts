import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import type { MemberEvents } from "@kpipe/events"
import { Publisher } from "@kpipe/pipeline"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import {
  closedUrl,
  created,
  deleted,
  eventually,
  isolated,
  reference,
  startMemberSync,
  TestLive,
  updated
} from "./utils.ts"

const t0 = Date.UTC(2030, 0, 1)
const email = "member@example.com"

/**
 * A member's history in auth-service's time order: CREATED, `updates` renames, then DELETED when
 * `deletedAtEnd`; delivered as `order` (a permutation of the history's indexes), cut into consumer
 * batches after the positions where `cuts` is true.
 */
interface Delivery {
  readonly updates: number
  readonly deletedAtEnd: boolean
  readonly order: ReadonlyArray<number>
  readonly cuts: ReadonlyArray<boolean>
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

const delivery: FastCheck.Arbitrary<Delivery> = FastCheck.tuple(
  FastCheck.integer({ min: 1, max: 4 }),
  FastCheck.boolean()
)
  .chain(([updates, deletedAtEnd]) => {
    const length = 1 + updates + (deletedAtEnd ? 1 : 0)
    return FastCheck.record({
      updates: FastCheck.constant(updates),
      deletedAtEnd: FastCheck.constant(deletedAtEnd),
      order: FastCheck.shuffledSubarray(range(length), { minLength: length, maxLength: length }),
      cuts: FastCheck.array(FastCheck.boolean(), { minLength: length - 1, maxLength: length - 1 })
    })
  })

const history = (memberId: number, { deletedAtEnd, updates }: Delivery): Array<MemberEvents.MemberEvent> => [
  created(memberId, t0, "name-0", email),
  ...range(updates).map((i) => updated(memberId, t0 + (i + 1) * 1_000, `name-${i + 1}`)),
  ...(deletedAtEnd ? [deleted(memberId, t0 + (updates + 1) * 1_000)] : [])
]

/** What the copy must hold once `delivered` arrived, whatever their order: the newest one's state. */
const expected = (delivered: ReadonlyArray<MemberEvents.MemberEvent>) => {
  const byTime = [...delivered].sort((a, b) => a.occurredAt.epochMillis - b.occurredAt.epochMillis)
  const newest = byTime[byTime.length - 1]!
  const named = byTime.filter((event) => event.type !== "MemberDeleted").pop()
  return {
    status: newest.type === "MemberDeleted" ? "DELETED" : "ACTIVE",
    sourceUpdatedAt: newest.occurredAt.epochMillis,
    // A deleted member's nickname is whatever it was when the deletion applied: only an ACTIVE one is compared.
    nickname: newest.type === "MemberDeleted" ? undefined : (named as MemberEvents.MemberUpdated).nickname
  }
}

/** Batches as delivered: the permuted events, cut after each `true`. */
const batches = <A>(events: ReadonlyArray<A>, { cuts, order }: Delivery): Array<Array<A>> => {
  const result: Array<Array<A>> = [[]]
  order.forEach((index, position) => {
    result[result.length - 1]!.push(events[index]!)
    if (cuts[position] === true) result.push([])
  })
  return result
}

class Sync extends Context.Tag("test/StaleEvents/Sync")<Sync, Effect.Effect.Success<ReturnType<typeof isolated>>>() {}

/** One member-sync consumer on a topic of its own for every run; each run uses a member of its own. */
const SyncLive = Layer.scoped(
  Sync,
  Effect.gen(function*() {
    const target = yield* isolated("stale")
    yield* startMemberSync({ topic: target.topic, group: target.group, authUrl: closedUrl })
    return target
  })
).pipe(Layer.provideMerge(TestLive))

let nextMember = 10_000

const claims = (group: string, events: ReadonlyArray<MemberEvents.MemberEvent>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ outcome: string }>`
      SELECT outcome FROM kpipe_processed_events
      WHERE consumer_group = ${group} AND ${sql.in("event_id", events.map((event) => event.eventId))}`)

/** The hand-picked order the test had before, and the two extremes: newest first, each alone. */
const forced: Array<[Delivery]> = [
  [{ updates: 3, deletedAtEnd: true, order: [0, 2, 1, 4, 3], cuts: [false, false, false, false] }],
  [{ updates: 4, deletedAtEnd: true, order: [5, 4, 3, 2, 1, 0], cuts: [true, true, true, true, true] }],
  [{ updates: 2, deletedAtEnd: false, order: [2, 0, 1], cuts: [true, false] }]
]

layer(SyncLive, { excludeTestServices: true, timeout: "60 seconds" })("MemberSync, stale events", (it) => {
  it.effect.prop(
    "stale events never overwrite newer data, whatever the arrival order and batch split",
    [delivery],
    ([plan]) =>
      Effect.gen(function*() {
        const { group, topic } = yield* Sync
        const memberId = nextMember++
        const events = history(memberId, plan)
        assert.deepStrictEqual([...plan.order].sort((a, b) => a - b), range(events.length))

        // The member is known from an older state, so no event of the history needs auth-service.
        const seed = created(memberId, t0 - 1_000, "seed", email)
        yield* Publisher.publish(topic, seed)
        yield* eventually(Effect.map(claims(group, [seed]), (rows) => rows.length === 1), "30 seconds", "seed applied")

        const delivered: Array<MemberEvents.MemberEvent> = [seed]
        for (const batch of batches(events, plan)) {
          if (batch.length === 0) continue
          yield* Publisher.publish(topic, ...batch)
          yield* eventually(
            Effect.map(claims(group, batch), (rows) => rows.length === batch.length),
            "30 seconds",
            "batch applied"
          )
          delivered.push(...batch)
          const want = expected(delivered)
          const held = yield* reference(memberId)
          assert.isDefined(held)
          assert.strictEqual(held!.status, want.status)
          assert.strictEqual(held!.sourceUpdatedAt.getTime(), want.sourceUpdatedAt)
          if (want.nickname !== undefined) assert.strictEqual(held!.nickname, want.nickname)
          assert.strictEqual(held!.email, email)
        }
        // Every event was taken and applied (none dead-lettered), ignored or not.
        const outcomes = yield* claims(group, events)
        assert.strictEqual(outcomes.length, events.length)
        assert.isTrue(outcomes.every((claim) => claim.outcome === "APPLIED"))
        const final = yield* reference(memberId)
        const newest = events[events.length - 1]!
        assert.strictEqual(final!.sourceUpdatedAt.getTime(), newest.occurredAt.epochMillis)
        assert.strictEqual(final!.status, plan.deletedAtEnd ? "DELETED" : "ACTIVE")
        if (!plan.deletedAtEnd) assert.strictEqual(final!.nickname, `name-${plan.updates}`)
      }),
    { timeout: 240_000, fastCheck: { numRuns: 25, examples: forced } }
  )
})
