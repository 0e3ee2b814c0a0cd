import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { DDayApi } from "@kpipe/contracts"
import { DDays } from "@kpipe/dday-service"
import { Ids } from "@kpipe/events"
import { Publisher } from "@kpipe/pipeline"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import {
  closedUrl,
  created,
  ddayCount,
  deleted,
  eventually,
  isolated,
  processed,
  reference,
  startMemberSync,
  TestLive
} from "./utils.ts"

const t0 = Date.UTC(2030, 0, 1)
const gate = 4242

const AppLive = DDays.DDays.Default.pipe(Layer.provideMerge(TestLive))

/** Sessions of this database waiting for a lock while running a statement that matches `pattern`. */
const waitingOnLock = (pattern: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE ${pattern}`).pipe(
      Effect.map((rows) => rows[0]!.n > 0)
    )

describe("a D-Day created while the member is deleted", () => {
  it.live(
    "the deletion waits for the D-Day's transaction, then removes the new D-Day too",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const ddays = yield* DDays.DDays
        const { group, topic } = yield* isolated("race")
        yield* startMemberSync({ topic, group, authUrl: closedUrl })
        yield* Publisher.publish(topic, created(1, t0, "alice"))
        yield* eventually(Effect.map(processed(group), (claims) => claims.length === 1))
        assert.deepInclude(yield* reference(1), { status: "ACTIVE" })

        // A gate inside the D-Day's transaction: its INSERT waits on an advisory lock the test holds.
        yield* sql`
        CREATE FUNCTION hold_ddays() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock(${sql.literal(String(gate))}); RETURN NEW; END $$`
        yield* sql`CREATE TRIGGER hold_ddays BEFORE INSERT ON ddays FOR EACH ROW EXECUTE FUNCTION hold_ddays()`
        const held = yield* Deferred.make<void>()
        const open = yield* Deferred.make<void>()
        const holder = yield* sql.withTransaction(
          Effect.zipRight(
            sql`SELECT pg_advisory_xact_lock(${gate})`,
            Effect.zipRight(Deferred.succeed(held, undefined), Deferred.await(open))
          )
        ).pipe(Effect.fork)
        yield* Deferred.await(held)
        // Opened whatever happens, so that a failed assertion does not leave transactions waiting.
        yield* Effect.addFinalizer(() => Deferred.succeed(open, undefined))

        const creating = yield* ddays.create(
          Ids.MemberId.make(1),
          new DDayApi.CreateDDayRequest({ title: "exam", targetDate: DDayApi.LocalDate.make("2031-05-01") })
        ).pipe(Effect.fork)
        // The D-Day's transaction found the member ACTIVE and is inserting.
        yield* eventually(waitingOnLock("%INSERT INTO ddays%"), "10 seconds", "the D-Day insert held at the gate")

        yield* Publisher.publish(topic, deleted(1, t0 + 1_000))
        // The deletion's transaction is blocked on the member's row, share-locked by the D-Day's.
        yield* eventually(
          waitingOnLock("%FROM member_references%FOR UPDATE%"),
          "20 seconds",
          "the deletion waiting for the member's row"
        )
        assert.strictEqual((yield* processed(group)).length, 1)

        yield* Deferred.succeed(open, undefined)
        yield* Fiber.join(holder)
        const dday = yield* Fiber.join(creating)
        assert.strictEqual(dday.title, "exam")

        yield* eventually(Effect.map(processed(group), (claims) => claims.length === 2))
        assert.deepInclude(yield* reference(1), { status: "DELETED" })
        assert.strictEqual(yield* ddayCount(1), 0)
      }).pipe(Effect.scoped, Effect.provide(AppLive)),
    { timeout: 60_000 }
  )
})
