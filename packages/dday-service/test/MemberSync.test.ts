import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { DDayApi } from "@kpipe/contracts"
import { DDays, type Workers } from "@kpipe/dday-service"
import { Ids } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { AlertSink, DeadLetter, DeadLetterMonitor, Publisher } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import { createServer, type Server } from "node:http"
import {
  closedUrl,
  created,
  ddayCount,
  deleted,
  eventually,
  isolated,
  processed,
  processedCount,
  readTopic,
  reference,
  signIn,
  startAuthService,
  startMemberSync,
  TestLive,
  updated
} from "./utils.ts"

const t0 = Date.UTC(2030, 0, 1)

const AppLive = DDays.DDays.Default.pipe(Layer.provideMerge(TestLive))

const addDDay = (memberId: number, title: string) =>
  Effect.flatMap(DDays.DDays, (ddays) =>
    ddays.create(
      Ids.MemberId.make(memberId),
      new DDayApi.CreateDDayRequest({ title, targetDate: DDayApi.LocalDate.make("2031-05-01") })
    ))

const committed = (group: string, topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic)).pipe(
    Effect.map((offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0))
  )

/** Runs the dead-letter monitor with an `AlertSink` that records; returns the recorded alerts. */
const monitorDeadLetters = (topic: Workers.MemberTopic) =>
  Effect.gen(function*() {
    const alerts = yield* Queue.unbounded<AlertSink.Alert>()
    yield* Layer.build(
      DeadLetterMonitor.layer({ topic, groupId: TestKafka.uniqueName("dlt"), kafka: TestKafka.fastConsumer }).pipe(
        Layer.provide(
          Layer.succeed(AlertSink.AlertSink, AlertSink.AlertSink.of({ alert: (a) => Queue.offer(alerts, a) }))
        )
      )
    )
    return alerts
  })

describe("MemberSync", () => {
  it.live("applies CREATED, UPDATED and DELETED; DELETED removes the member's D-Days", () =>
    Effect.gen(function*() {
      const { group, topic } = yield* isolated("sync")
      yield* startMemberSync({ topic, group, authUrl: closedUrl })
      yield* Publisher.publish(topic, created(1, t0, "alice", "alice@example.com"))
      yield* eventually(Effect.map(processedCount(group), (n) => n === 1))
      assert.deepInclude(yield* reference(1), { nickname: "alice", email: "alice@example.com", status: "ACTIVE" })

      yield* addDDay(1, "exam")
      yield* addDDay(1, "trip")
      yield* Publisher.publish(topic, updated(1, t0 + 1_000, "alicia"))
      yield* eventually(Effect.map(processedCount(group), (n) => n === 2))
      const renamed = yield* reference(1)
      assert.deepInclude(renamed, { nickname: "alicia", email: "alice@example.com", status: "ACTIVE" })
      assert.strictEqual(renamed!.sourceUpdatedAt.getTime(), t0 + 1_000)
      assert.strictEqual(yield* ddayCount(1), 2)

      yield* Publisher.publish(topic, deleted(1, t0 + 2_000))
      yield* eventually(Effect.map(processedCount(group), (n) => n === 3))
      assert.deepInclude(yield* reference(1), { nickname: "alicia", status: "DELETED" })
      assert.strictEqual(yield* ddayCount(1), 0)
    }).pipe(Effect.scoped, Effect.provide(AppLive)), { timeout: 60_000 })

  it.live("an event delivered twice is applied once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { group, topic } = yield* isolated("twice")
      const first = created(2, t0, "bob")
      const rename = updated(2, t0 + 1_000, "bobby")
      yield* startMemberSync({ topic, group, authUrl: closedUrl })
      yield* Publisher.publish(topic, first, rename, first, rename)
      yield* eventually(Effect.map(committed(group, topic.name), (n) => n === 4))
      const syncedAfter = (yield* sql<{ syncedAt: Date }>`SELECT synced_at FROM member_references`)[0]!.syncedAt

      // Redelivered much later, in another batch: still nothing happens.
      yield* Publisher.publish(topic, rename, first)
      yield* eventually(Effect.map(committed(group, topic.name), (n) => n === 6))
      const claims = yield* processed(group)
      assert.deepStrictEqual(claims.map((claim) => claim.eventId).sort(), [first.eventId, rename.eventId].sort())
      assert.deepInclude(yield* reference(2), { nickname: "bobby", status: "ACTIVE" })
      const [row] = yield* sql<{ syncedAt: Date }>`SELECT synced_at FROM member_references`
      assert.strictEqual(row!.syncedAt.getTime(), syncedAfter.getTime())
    }).pipe(Effect.scoped, Effect.provide(AppLive)), { timeout: 60_000 })

  it.live(
    "UPDATED before CREATED: the member is fetched from the real auth-service, and the final state is right",
    () =>
      Effect.gen(function*() {
        const { group, prefix, topic } = yield* isolated("fallback")
        const auth = yield* startAuthService({ prefix })
        const { member } = yield* auth.members.signIn(signIn("sub-dana", "dana", "dana@example.com"))
        const renamed = yield* auth.members.updateProfile(member.memberId, { nickname: "danielle" })
        const id = member.memberId
        yield* startMemberSync({ topic, group, authUrl: auth.baseUrl })

        // What auth-service put in its outbox, delivered in the wrong order.
        yield* Publisher.publish(topic, updated(id, renamed.updatedAt.epochMillis, "danielle"))
        yield* eventually(Effect.map(processedCount(group), (n) => n === 1))
        const fetched = yield* reference(id)
        assert.deepInclude(fetched, { nickname: "danielle", email: "dana@example.com", status: "ACTIVE" })
        assert.strictEqual(fetched!.sourceUpdatedAt.getTime(), renamed.updatedAt.epochMillis)

        yield* Publisher.publish(topic, created(id, member.updatedAt.epochMillis, "dana", "dana@example.com"))
        yield* eventually(Effect.map(processedCount(group), (n) => n === 2))
        assert.deepInclude(yield* reference(id), { nickname: "danielle", status: "ACTIVE" })

        // An e-mail change is not in the event: it is fetched.
        const moved = yield* auth.members.updateProfile(id, { email: "dana@example.org" })
        yield* Publisher.publish(topic, updated(id, moved.updatedAt.epochMillis, "danielle", ["email"]))
        yield* eventually(Effect.map(processedCount(group), (n) => n === 3))
        const final = yield* reference(id)
        assert.deepInclude(final, { nickname: "danielle", email: "dana@example.org", status: "ACTIVE" })
        assert.strictEqual(final!.sourceUpdatedAt.getTime(), moved.updatedAt.epochMillis)

        // A DELETED of a member never seen: fetched (already deleted there) and stored as deleted.
        const other = yield* auth.members.signIn(signIn("sub-erin", "erin"))
        const gone = yield* auth.members.delete(other.member.memberId)
        yield* Publisher.publish(topic, deleted(other.member.memberId, gone.updatedAt.epochMillis))
        yield* eventually(Effect.map(processedCount(group), (n) => n === 4))
        assert.deepInclude(yield* reference(other.member.memberId), { nickname: "erin", status: "DELETED" })
        assert.isTrue((yield* processed(group)).every((claim) => claim.outcome === "APPLIED"))
      }).pipe(Effect.scoped, Effect.provide(AppLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a member auth-service does not know (404) is dead-lettered at once: DLT record, failed-events row, alert",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const { group, prefix, topic } = yield* isolated("unknown")
        const auth = yield* startAuthService({ prefix })
        const alerts = yield* monitorDeadLetters(topic)
        yield* startMemberSync({ topic, group, authUrl: auth.baseUrl })
        const orphan = updated(424242, t0, "ghost")
        yield* Publisher.publish(topic, orphan)

        const alert = yield* Queue.take(alerts).pipe(Effect.timeout("30 seconds"))
        assert.strictEqual(alert.severity, "critical")
        assert.strictEqual(alert.details["eventId"], orphan.eventId)
        assert.strictEqual(alert.details["key"], "424242")
        assert.include(String(alert.details["error"]), "424242")

        const [record] = yield* readTopic(topic.deadLetter.name, 1)
        const { letter, value } = yield* DeadLetter.decode(record!)
        assert.deepInclude(letter, {
          originalTopic: topic.name,
          consumerGroup: group,
          errorTag: "MemberUnknown",
          eventId: orphan.eventId,
          eventType: "MemberUpdated",
          attempts: 1
        })
        assert.strictEqual(JSON.parse(value!.toString()).eventId, orphan.eventId)
        const failed = yield* sql<{ eventId: string; errorTag: string; status: string }>`
          SELECT event_id, error_tag, status FROM kpipe_failed_events`
        assert.deepStrictEqual(failed, [{ eventId: orphan.eventId, errorTag: "MemberUnknown", status: "OPEN" }])
        assert.deepStrictEqual(yield* processed(group), [{ eventId: orphan.eventId, outcome: "DEAD_LETTERED" }])
        assert.isUndefined(yield* reference(424242))
      }).pipe(Effect.scoped, Effect.provide(AppLive)),
    { timeout: 60_000 }
  )

  it.live(
    "an unreachable auth-service is waited for, past the policy's attempts; once it answers the event is applied",
    () =>
      Effect.gen(function*() {
        const { group, topic } = yield* isolated("unreachable")
        // A port nothing listens on yet: connections are refused until auth-service starts there.
        const port = yield* Effect.async<number>((resume) => {
          const probe = createServer().listen(0, "127.0.0.1", () => {
            const { port } = probe.address() as { port: number }
            probe.close(() => resume(Effect.succeed(port)))
          })
        })
        yield* startMemberSync({ topic, group, authUrl: `http://127.0.0.1:${port}` })
        // A member it knows from its event alone: applied, so the consumer runs before the wait starts.
        yield* Publisher.publish(topic, created(778, t0, "known", "known@example.com"))
        yield* eventually(
          Effect.map(processed(group), (claims) => claims.length === 1),
          "20 seconds",
          "the first claim"
        )
        const orphan = deleted(777, t0)
        yield* Publisher.publish(topic, orphan)
        // The test's retry policy (fastRetry) would have dead-lettered it in well under a second.
        yield* Effect.sleep("2 seconds")
        assert.strictEqual((yield* processed(group)).length, 1)

        yield* Effect.acquireRelease(
          Effect.async<Server>((resume) => {
            const server: Server = createServer((_, response) =>
              response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({
                memberId: 777,
                provider: "google",
                subject: "subject-777",
                nickname: "before",
                status: "ACTIVE",
                createdAt: new Date(t0 - 1_000).toISOString(),
                updatedAt: new Date(t0 - 1_000).toISOString()
              }))
            )
            server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
          }),
          (server) =>
            Effect.async<void>((resume) => {
              server.closeAllConnections()
              server.close(() => resume(Effect.void))
            })
        )
        yield* eventually(Effect.map(processed(group), (claims) => claims.length === 2), "20 seconds", "the claim")
        assert.deepInclude(yield* processed(group), { eventId: orphan.eventId, outcome: "APPLIED" })
        assert.deepInclude(yield* reference(777), { status: "DELETED" })
      }).pipe(Effect.scoped, Effect.provide(AppLive)),
    { timeout: 60_000 }
  )
})
