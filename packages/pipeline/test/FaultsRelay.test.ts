import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin, KafkaError, Producer } from "@kpipe/kafka"
import { Outbox, OutboxRelay, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, FaultProxy, KafkaFaults, TestLogging } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import {
  createTopics,
  decodeValue,
  event,
  eventually,
  listeningSessions,
  makeTopic,
  readTopic,
  TestLive,
  topicNamed
} from "./utils.ts"

const statuses = Effect.flatMap(
  SqlClient,
  (sql) => sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM kpipe_outbox GROUP BY status`
).pipe(
  Effect.map((rows) => Object.fromEntries(rows.map((row) => [row.status, row.n])) as Record<string, number>)
)

const allPublished = (count: number) =>
  Effect.map(statuses, (s) => s["PUBLISHED"] === count && s["PENDING"] === undefined)

/** A producer on a client whose every broker connection goes through `proxy` (2 reconnects unless set). */
const producerThrough = (
  proxy: FaultProxy.FaultProxy,
  config: Parameters<typeof KafkaFaults.layerThrough>[1] = { retries: 2 }
) =>
  Layer.build(Producer.layer().pipe(Layer.provide(KafkaFaults.layerThrough(proxy, config)))).pipe(
    Effect.map((context) => Context.get(context, Producer.Producer))
  )

describe("OutboxRelay under faults", () => {
  it.live(
    "a claim whose database connection is lost (ROLLBACK dies) does not end the relay",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-relay-db")
        yield* createTopics(topic)
        const url = yield* Database.url
        const producer = yield* Producer.Producer
        let faults = 1
        // Between the send and the mark, the claim's own session is killed: its UPDATE fails, and
        // the ROLLBACK on the dead connection is a defect.
        const killClaimSession = Effect.gen(function*() {
          const [session] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
          yield* Database.onServer(url, (server) => server`SELECT pg_terminate_backend(${session!.pid})`)
        }).pipe(Effect.orDie)
        const killing = Producer.Producer.of({
          send: producer.send,
          sendBatch: (records) =>
            Effect.zipLeft(
              producer.sendBatch(records),
              Effect.suspend(() => faults-- > 0 ? killClaimSession : Effect.void)
            )
        })
        const events = Array.from({ length: 30 }, (_, i) => event(`k${i % 5}`, i))
        yield* Effect.scoped(Effect.gen(function*() {
          // Polling only helps a loop that survived (the killed session may hold its locks a moment
          // longer, so the claim after it can find nothing to take).
          yield* OutboxRelay.run({ pollInterval: "500 millis" }).pipe(Effect.provideService(Producer.Producer, killing))
          yield* Outbox.append(topic, ...events).pipe(Effect.retry({ times: 5 }))
          yield* eventually(allPublished(events.length).pipe(Effect.orElseSucceed(() => false)), "20 seconds")
        }))
        assert.strictEqual(faults, -1, "the fault was injected")
        const records = yield* readTopic(topic.name, events.length)
        assert.deepStrictEqual(
          new Set(records.map((r) => decodeValue(r).eventId)),
          new Set(events.map((e) => e.eventId))
        )
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  it.live(
    "a relay whose listening session was terminated listens again: an append wakes it, not its poll",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("faults-relay-listen")
        yield* createTopics(topic)
        const [database] = yield* sql<{ name: string }>`SELECT current_database() AS name`
        // Only a notification can wake it: the poll would come in an hour.
        yield* OutboxRelay.run({ pollInterval: "1 hour" })
        yield* eventually(Effect.map(listeningSessions, (n) => n === 1), "10 seconds", "the relay listens")
        yield* Outbox.append(topic, event("k", 1))
        yield* readTopic(topic.name, 1).pipe(Effect.timeout("20 seconds"))

        // As a failover or an operator would: every session of the database ended, the relay's
        // listening one with them (no row pending, so no claim notices).
        yield* DatabaseFaults.terminateBackends(yield* Database.url, database!.name)
        // The test's own pooled sessions were ended too: the first statements on them fail (a ROLLBACK
        // on one is a defect).
        yield* Outbox.append(topic, event("k", 2)).pipe(
          Effect.sandbox,
          Effect.retry({ times: 20, schedule: Schedule.spaced("100 millis") }),
          Effect.unsandbox
        )
        const records = yield* readTopic(topic.name, 2).pipe(Effect.timeout("30 seconds"))
        assert.deepStrictEqual(records.map((r) => decodeValue(r).seq), [1, 2])
        yield* eventually(Effect.map(listeningSessions, (n) => n === 1), "10 seconds", "one listening session again")
        // Appended while it listens again: published within moments, whatever it took before.
        const before = Date.now()
        yield* Outbox.append(topic, event("k", 3))
        yield* readTopic(topic.name, 3).pipe(Effect.timeout("10 seconds"))
        assert.isBelow(Date.now() - before, 3_000)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a broker unreachable past kafkajs's reconnects blocks the relay; no row is marked FAILED",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-relay-cut")
        yield* createTopics(topic)
        const proxy = yield* KafkaFaults.proxy
        const producer = yield* producerThrough(proxy)
        const events = Array.from({ length: 40 }, (_, i) => event(`k${i % 8}`, i))
        yield* OutboxRelay.run({ pollInterval: "200 millis" }).pipe(Effect.provideService(Producer.Producer, producer))
        yield* proxy.during(
          FaultProxy.cut,
          Effect.gen(function*() {
            yield* Outbox.append(topic, ...events.slice(0, 20))
            yield* Effect.sleep("4 seconds")
            yield* Outbox.append(topic, ...events.slice(20))
            yield* Effect.sleep("4 seconds")
            const during = yield* statuses
            assert.isUndefined(during["FAILED"], "nothing FAILED while the broker is away")
          })
        )
        yield* eventually(allPublished(events.length), "30 seconds", "all published after the cut")
        const records = yield* readTopic(topic.name, events.length)
        const seen = new Set<string>()
        const order = new Map<string, Array<number>>()
        for (const e of records.map(decodeValue)) {
          if (seen.has(e.eventId)) continue
          seen.add(e.eventId)
          order.set(e.key, [...(order.get(e.key) ?? []), e.seq])
        }
        assert.strictEqual(seen.size, events.length)
        for (const [key, seqs] of order) assert.deepStrictEqual(seqs, [...seqs].sort((a, b) => a - b), key)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a failed claim is logged at once even while the pending count cannot be read: the count waits at most 1 s",
    () =>
      Effect.gen(function*() {
        const { layer: recorded, logged } = TestLogging.recording(LogLevel.Warning)
        const topic = makeTopic("faults-relay-stats")
        yield* createTopics(topic)
        const producer = yield* Producer.Producer
        const locker = yield* Database.separatePool(1)
        let failedAt: number | undefined
        // The claim fails while another session waits to lock the outbox table: granted at the
        // claim's rollback, the lock holds every statement on the table, the relay's pending count
        // among them, for 10 s. Forked here, outside the claim's transaction, which it would join.
        const lockNow = yield* Deferred.make<void>()
        yield* Effect.forkScoped(
          Deferred.await(lockNow).pipe(
            Effect.zipRight(locker.withTransaction(
              Effect.zipRight(locker`LOCK TABLE kpipe_outbox IN ACCESS EXCLUSIVE MODE`, Effect.sleep("10 seconds"))
            )),
            Effect.orDie
          )
        )
        const failing = Producer.Producer.of({
          send: producer.send,
          sendBatch: (records) =>
            Effect.gen(function*() {
              if (failedAt !== undefined) return yield* producer.sendBatch(records)
              yield* Deferred.succeed(lockNow, undefined)
              yield* Effect.sleep("500 millis")
              failedAt = Date.now()
              return yield* Effect.fail(
                new KafkaError.KafkaError({ reason: "Send", retriable: true, cause: new Error("injected") })
              )
            })
        })
        yield* Effect.scoped(
          Effect.gen(function*() {
            yield* OutboxRelay.run({ pollInterval: "200 millis" }).pipe(
              Effect.provideService(Producer.Producer, failing)
            )
            yield* Outbox.append(topic, event("k", 1))
            yield* eventually(
              Effect.sync(() => logged.some((line) => line.message.startsWith("Outbox relay could not publish"))),
              "20 seconds",
              "the failed claim logged"
            )
            const loggedAfter = Date.now() - failedAt!
            assert.isAtMost(loggedAfter, 3_000, "ms from the failure to its warning")
            yield* eventually(allPublished(1).pipe(Effect.orElseSucceed(() => false)), "30 seconds", "published after")
          }).pipe(Effect.provide(recorded))
        )
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )

  // Other messages after the fault (the relay claims again, with rows written since and its keys'
  // other partitions): fewer than the lost batch, the broker expects the sequence after that batch
  // and kafkajs sends the one before it (OUT_OF_ORDER_SEQUENCE_NUMBER, for ever); as many, the
  // broker would answer them as that batch's duplicate and write nothing.
  for (
    const [after, outcome] of [
      [["after"], "the producer starts over with a new producer id instead of failing for ever"],
      [["after-1", "after-2"], "written, not taken for the lost batch's duplicate"]
    ] as const
  ) {
    it.live(
      `a write the broker took but never acknowledged, then ${
        after.length === 1 ? "fewer" : "as many"
      } other messages: ${outcome}`,
      () =>
        Effect.gen(function*() {
          const topic = makeTopic("faults-relay-unacked", 1)
          yield* createTopics(topic)
          const proxy = yield* KafkaFaults.proxy
          const producer = yield* producerThrough(proxy)
          const message = (id: string) => ({ key: "k", value: id })
          yield* producer.send({ topic: topic.name, messages: [message("first")] })
          // The broker writes the batch, its answer is lost; then the way is cut until kafkajs gives
          // up the send. kafkajs hands the batch's sequence numbers back, though the broker has them.
          yield* proxy.set(FaultProxy.dropResponses)
          const unacknowledged = yield* Effect.fork(
            producer.send({ topic: topic.name, messages: [message("unacknowledged-1"), message("unacknowledged-2")] })
          )
          yield* Effect.sleep("1 second")
          yield* proxy.set(FaultProxy.cut)
          const given = yield* Fiber.await(unacknowledged)
          assert.isTrue(Exit.isFailure(given), "kafkajs gave the send up")
          yield* proxy.set(FaultProxy.pass)
          const sent = yield* producer.send({ topic: topic.name, messages: after.map(message) }).pipe(
            Effect.retry({ times: 3 }),
            Effect.either
          )
          assert.isTrue(
            Either.isRight(sent),
            `the send after the fault: ${Either.isLeft(sent) ? sent.left.message : ""}`
          )
          const expected = ["first", "unacknowledged-1", "unacknowledged-2", ...after]
          const records = yield* readTopic(topic.name, expected.length).pipe(Effect.timeoutOption("15 seconds"))
          assert.deepStrictEqual(
            Option.match(records, {
              onNone: () => [`fewer than ${expected.length} records`],
              onSome: (rs) => rs.map((r) => r.value?.toString())
            }),
            expected
          )
        }).pipe(Effect.scoped, Effect.provide(TestLive)),
      { timeout: 90_000 }
    )
  }

  /**
   * A send that failed with the way cut, then the next one (which starts the producer over, whose
   * connection kafkajs tries again and again) given up while the broker is unreachable; returns the
   * milliseconds the interrupt took (37 s, uninterruptible, before connecting could be interrupted).
   */
  const startOverGivenUp = (name: string) =>
    Effect.gen(function*() {
      const topic = makeTopic(name, 1)
      yield* createTopics(topic)
      const proxy = yield* KafkaFaults.proxy
      const producer = yield* producerThrough(proxy, {})
      const send = producer.send({ topic: topic.name, messages: [{ key: "k", value: "v" }] })
      yield* send
      yield* proxy.set(FaultProxy.cut)
      const failed = yield* Effect.either(send)
      assert.isTrue(Either.isLeft(failed), "the send failed with the way cut")
      yield* proxy.set(FaultProxy.unreachable)
      const next = yield* Effect.fork(send)
      yield* Effect.sleep("1 second")
      const started = Date.now()
      yield* Fiber.interrupt(next)
      return { proxy, send, interruptMillis: Date.now() - started }
    })

  it.live(
    "a send that starts the producer over while the broker is unreachable can be given up at once (the relay stopping)",
    () =>
      Effect.gen(function*() {
        const { interruptMillis, proxy, send } = yield* startOverGivenUp("faults-relay-start-over-away")
        assert.isAtMost(interruptMillis, 6_000, "ms to give the send up")
        yield* proxy.set(FaultProxy.pass)
        yield* send.pipe(Effect.retry({ times: 3 }))
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a producer whose connecting was given up is not left connected when the broker comes back",
    () =>
      Effect.gen(function*() {
        const { proxy } = yield* startOverGivenUp("faults-relay-given-up-connect")
        // kafkajs goes on retrying the connection it was asked to give up; the broker back, one
        // of its attempts gets through.
        const before = yield* proxy.connections
        yield* proxy.set(FaultProxy.pass)
        yield* eventually(Effect.map(proxy.connections, (n) => n > before), "40 seconds")
        yield* Effect.sleep("3 seconds")
        assert.strictEqual(yield* proxy.open, 0, "connections left open by producers nobody sends on")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a claim holds no more bytes than a record batch may: large rows go in several claims, none rejected as too large, none sent twice",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-relay-large", 2)
        yield* createTopics(topic)
        // 1.2 MB for one key's partition, over the broker's 1 MB a record batch may hold; small rows
        // of other keys on both partitions. Rejected, the claim would be sent again one row at a time,
        // the other partition's rows with it.
        const large = "x".repeat(2_000)
        const events = [
          ...Array.from({ length: 40 }, (_, i) => event(`small-${i}`, 1)),
          ...Array.from({ length: 600 }, (_, i) => event("large", i, large))
        ]
        yield* Outbox.append(topic, ...events)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* OutboxRelay.run({ pollInterval: "200 millis", shardsPerClaim: 64 })
          yield* eventually(allPublished(events.length).pipe(Effect.orElseSucceed(() => false)), "30 seconds")
        }))
        const records = yield* readTopic(topic.name, events.length)
        assert.strictEqual(records.length, events.length, "records on the topic")
        assert.strictEqual(new Set(records.map((r) => decodeValue(r).eventId)).size, events.length)
        const sql = yield* SqlClient
        const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_outbox WHERE attempts > 1`
        assert.strictEqual(row!.n, 0, "rows sent more than once")
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "rows of a topic that does not exist hold back only their keys; others flow, they follow once it exists",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const healthy = makeTopic("faults-relay-healthy")
        const absent = makeTopic("faults-relay-absent")
        yield* createTopics(healthy)
        yield* OutboxRelay.run({ pollInterval: "200 millis" })
        // Keys on every shard, so a claim cannot avoid the missing topic's shard for long.
        const first = Array.from({ length: 200 }, (_, i) => event(`h${i}`, 1))
        yield* Outbox.append(absent, event("lost-key", 1), event("lost-key", 2))
        yield* Outbox.append(healthy, ...first)
        yield* eventually(
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_outbox WHERE status = 'PUBLISHED'`,
            (rows) => rows[0]!.n === first.length
          ),
          "15 seconds",
          "healthy keys published"
        )
        const later = Array.from({ length: 50 }, (_, i) => event(`h${i}`, 2))
        yield* Outbox.append(healthy, ...later)
        yield* eventually(
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_outbox WHERE status = 'PUBLISHED'`,
            (rows) => rows[0]!.n === first.length + later.length
          ),
          "15 seconds",
          "later healthy rows published"
        )
        const waiting = yield* sql<{ status: string; lastError: string | null }>`
        SELECT status, last_error FROM kpipe_outbox WHERE topic = ${absent.name}`
        assert.deepStrictEqual(waiting.map((row) => row.status), ["PENDING", "PENDING"])
        assert.match(waiting[0]!.lastError ?? "", /not found/)

        yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topicNamed(absent.name)])))
        yield* eventually(allPublished(first.length + later.length + 2), "30 seconds", "absent topic's rows published")
        const records = yield* readTopic(absent.name, 2)
        assert.deepStrictEqual(records.map((r) => decodeValue(r).seq), [1, 2])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a claim waiting on a frozen broker is reported after 10 s (Warning, relay backing off) and the relay runs again once it answers",
    () =>
      Effect.gen(function*() {
        const { layer: recorded, logged } = TestLogging.recording(LogLevel.Warning)
        const topic = makeTopic("faults-relay-stall")
        yield* createTopics(topic)
        const proxy = yield* KafkaFaults.proxy
        const producer = yield* producerThrough(proxy, { requestTimeout: 1_000 })
        const states: Array<string> = []
        const observer = OutboxRelay.Observer.of({ relay: (state) => void states.push(state) })
        const stalled = () => logged.filter((line) => line.message.startsWith("Outbox relay claim still waiting"))
        yield* Effect.scoped(
          Effect.gen(function*() {
            yield* OutboxRelay.run({ pollInterval: "200 millis" }).pipe(
              Effect.provideService(Producer.Producer, producer),
              Effect.provideService(OutboxRelay.Observer, observer)
            )
            yield* Outbox.append(topic, event("k", 1))
            yield* eventually(allPublished(1).pipe(Effect.orElseSucceed(() => false)), "15 seconds")
            yield* proxy.set(FaultProxy.freeze)
            const frozenAt = Date.now()
            yield* Outbox.append(topic, event("k", 2))
            yield* eventually(Effect.sync(() => stalled().length > 0), "20 seconds", "the stall reported")
            const reportedAfter = Date.now() - frozenAt
            assert.isAtLeast(reportedAfter, 9_000, "not before 10 s")
            assert.strictEqual(stalled()[0]!.level, "WARN")
            assert.strictEqual(states.at(-1), "backingOff")
            yield* proxy.set(FaultProxy.pass)
            yield* eventually(allPublished(2).pipe(Effect.orElseSucceed(() => false)), "15 seconds", "published after")
            yield* eventually(Effect.sync(() => states.at(-1) === "running"), "5 seconds", "running again")
          }).pipe(Effect.provide(recorded))
        )
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )

  it.live(
    "a send retried through a frozen broker goes through soon after it answers again: kafkajs's waits are capped at 1 s",
    () =>
      Effect.gen(function*() {
        const topic = makeTopic("faults-relay-frozen")
        yield* createTopics(topic)
        const proxy = yield* KafkaFaults.proxy
        // The defaults but a 1 s request timeout, so that the waits between attempts show within seconds.
        const producer = yield* producerThrough(proxy, { requestTimeout: 1_000 })
        const send = (seq: number) =>
          producer.send({ topic: topic.name, messages: [{ key: "k", value: JSON.stringify(event("k", seq)) }] })
        yield* send(1)

        // Frozen as by SIGSTOP: each attempt times out and is sent again after kafkajs's wait.
        yield* proxy.set(FaultProxy.freeze)
        const sending = yield* Effect.fork(send(2))
        const attempts: Array<number> = []
        let seen = yield* proxy.clientChunks
        const frozenUntil = Date.now() + 25_000
        while (Date.now() < frozenUntil) {
          const now = yield* proxy.clientChunks
          if (now > seen) attempts.push(Date.now())
          seen = now
          yield* Effect.sleep("20 millis")
        }
        yield* proxy.set(FaultProxy.pass)
        const thawed = Date.now()
        yield* Fiber.join(sending)
        const through = Date.now() - thawed

        // An attempt every timeout + at most 1 s (~2 s). With waits capped at 5 s the gaps grew to
        // 2.4, 3.1 and 4.0 s within the 25 s (kafkajs's retry curve under vitest, NODE_ENV=test,
        // starts at 50 ms; a service's at 300 ms), and a send came that much after the broker
        // answered again (a SIGSTOPped broker in the fault matrix).
        const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!)
        const described = `attempts ${gaps.join(", ")} ms apart, through ${through} ms after the thaw`
        assert.isAtLeast(gaps.length, 5, described)
        assert.isBelow(Math.max(...gaps), 3_000, described)
        assert.isBelow(through, 2_500, described)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})
