import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import { Ids, OrderEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import * as BigDecimal from "effect/BigDecimal"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import { randomUUID } from "node:crypto"
import { emailOf, phoneOf } from "../src/internal/contacts.ts"
import { Notifications } from "../src/Notifications.ts"
import { OrderTopics } from "../src/Topics.ts"
import { eventually, newProduct, newUser, place, Receivers, settled, TestLive } from "./utils.ts"

/**
 * DDL on notification_deliveries, giving way after 500 ms and trying again: queued behind a
 * consumer transaction that read the table, its lock request would hold up the delivery rows that
 * transaction waits for (written through the notifications' own pool), a wait PostgreSQL cannot
 * see as a deadlock (the test hung there in CI).
 */
const ddl = (...statements: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql.withTransaction(
      Effect.zipRight(
        sql`SET LOCAL lock_timeout = '500ms'`,
        Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true })
      )
    ).pipe(
      Effect.retry({
        schedule: Schedule.spaced("200 millis"),
        while: (error) => sqlStateOf(error) === "55P03",
        times: 100
      })
    ))

/**
 * Until the scope closes, writing a delivery row that matches `condition` fails the way a lost
 * connection does (SQLSTATE 08006), while the messages themselves still go out.
 */
const recordingFails = (name: string, condition: string) =>
  Effect.acquireRelease(
    ddl(
      `CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            IF ${condition} THEN
              RAISE EXCEPTION 'connection lost while recording a delivery (test)' USING ERRCODE = '08006';
            END IF;
            RETURN NEW;
          END $$`,
      `CREATE TRIGGER ${name} BEFORE INSERT OR UPDATE ON notification_deliveries
          FOR EACH ROW EXECUTE FUNCTION ${name}()`
    ),
    () => ddl(`DROP TRIGGER ${name} ON notification_deliveries`, `DROP FUNCTION ${name}()`).pipe(Effect.orDie)
  )

const sqlStateOf = (error: unknown) =>
  Predicate.hasProperty(error, "cause") && Predicate.hasProperty(error.cause, "code") ? error.cause.code : undefined

/** A confirmation of an order of its own for `userId`, sent straight to `Notifications` (no saga). */
const confirmation = (userId: number, order = 0) =>
  new OrderEvents.OrderConfirmed({
    eventId: Ids.EventId.make(randomUUID()),
    orderId: Ids.OrderId.make(1_000_000_000 + userId * 10 + order),
    userId: Ids.UserId.make(userId),
    productId: Ids.ProductId.make(1),
    quantity: 1,
    amount: BigDecimal.unsafeFromString("10.00"),
    occurredAt: DateTime.unsafeNow()
  })

layer(TestLive("order-notifications"), { timeout: "120 seconds", excludeTestServices: true })(
  "order notifications",
  (it) => {
    it.effect("a database fault while recording a delivery fails the event with the SqlError, not NotificationFailed", () =>
      Effect.gen(function*() {
        const notifications = yield* Notifications
        const sql = yield* SqlClient
        const { mail } = yield* Receivers
        const userId = newUser()
        const event = confirmation(userId)
        const error = yield* Effect.scoped(
          Effect.zipRight(
            recordingFails(`fail_deliveries_${userId}`, `NEW.order_id = ${event.orderId}`),
            Effect.flip(notifications.notifyAll([event]))
          )
        )
        assert.strictEqual(error._tag, "SqlError")
        assert.strictEqual(sqlStateOf(error), "08006")
        assert.isTrue(mail.received().some((m) => m.to.includes(emailOf(event.userId))))

        yield* notifications.notifyAll([event])
        const rows = yield* sql<{ channel: string; state: string }>`
          SELECT channel, state FROM notification_deliveries WHERE event_id = ${event.eventId} ORDER BY channel`
        assert.deepStrictEqual(rows.map((row) => `${row.channel} ${row.state}`), ["EMAIL SENT", "SMS SENT"])
      }))

    it.effect("a handler interrupted while a channel is being sent (a rebalance, a stop) sees it through and records it: not sent twice", () =>
      Effect.gen(function*() {
        const notifications = yield* Notifications
        const { mail, sms } = yield* Receivers
        const event = confirmation(newUser())
        const phone = phoneOf(event.userId)
        const texts = () => sms.received().filter((m) => m.to === phone).length
        sms.answerLater(phone, 1_500)
        const fiber = yield* Effect.fork(notifications.notifyAll([event]))
        // The provider has the message; its answer is on the way.
        yield* eventually(Effect.sync(() => texts() === 1), "10 seconds", "the SMS at the provider")
        yield* Fiber.interrupt(fiber)
        yield* notifications.notifyAll([event])
        assert.strictEqual(texts(), 1, "SMS sent twice")
        assert.strictEqual(mail.received().filter((m) => m.to.includes(emailOf(event.userId))).length, 1)
      }))

    it.effect(
      "a channel SENT stays SENT when an attempt that began before it fails afterwards: not sent again",
      () =>
        Effect.gen(function*() {
          const notifications = yield* Notifications
          const sql = yield* SqlClient
          const { sms } = yield* Receivers
          const event = confirmation(newUser())
          const phone = phoneOf(event.userId)
          const texts = () => sms.received().filter((m) => m.to === phone).length
          // The first attempt's SMS is answered after SMS_TIMEOUT (10 s): it fails once the second
          // attempt, begun meanwhile as by the partition's next owner, has sent and recorded its own.
          sms.answerLater(phone, 11_000)
          const stale = yield* Effect.fork(notifications.notifyAll([event]))
          yield* eventually(Effect.sync(() => texts() === 1), "10 seconds", "the first attempt's SMS at the provider")
          yield* notifications.notifyAll([event])
          assert.strictEqual(texts(), 2)
          const failure = yield* Effect.flip(Fiber.join(stale))
          assert.strictEqual(failure._tag, "NotificationUnavailable")
          const rows = yield* sql<{ channel: string; state: string }>`
          SELECT channel, state FROM notification_deliveries WHERE event_id = ${event.eventId} ORDER BY channel`
          assert.deepStrictEqual(rows.map((row) => `${row.channel} ${row.state}`), ["EMAIL SENT", "SMS SENT"])
          yield* notifications.notifyAll([event])
          assert.strictEqual(texts(), 2, "SMS sent again")
        }),
      { timeout: 60_000 }
    )

    it.effect("a customer's later message does not overtake an earlier one that failed (SMS away)", () =>
      Effect.gen(function*() {
        const notifications = yield* Notifications
        const { mail, sms } = yield* Receivers
        const userId = newUser()
        const [first, second] = [confirmation(userId, 1), confirmation(userId, 2)]
        sms.failNext(1, phoneOf(first.userId), 503)
        const error = yield* Effect.flip(notifications.notifyAll([first, second]))
        assert.deepStrictEqual([error._tag, error._tag === "SqlError" ? "" : error.eventId], [
          "NotificationUnavailable",
          first.eventId
        ])
        const subjects = () => mail.received().filter((m) => m.to.includes(emailOf(first.userId))).map((m) => m.subject)
        assert.deepStrictEqual(subjects(), [`Order ${first.orderId} confirmed`])

        yield* notifications.notifyAll([first])
        yield* notifications.notifyAll([second])
        assert.deepStrictEqual(subjects(), [`Order ${first.orderId} confirmed`, `Order ${second.orderId} confirmed`])
        assert.deepStrictEqual(
          sms.received().filter((m) => m.to === phoneOf(first.userId)).map((m) => m.text.split(".")[0]),
          [`Order ${first.orderId} confirmed`, `Order ${second.orderId} confirmed`]
        )
      }))

    it.effect("an event whose deliveries cannot be recorded waits for the database, is never dead-lettered, and is notified once it is back", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topics = yield* OrderTopics
        const admin = yield* Admin.Admin
        const { mail } = yield* Receivers
        const productId = yield* newProduct(5)
        const userId = newUser()
        const email = emailOf(Ids.UserId.make(userId))
        const attempts = () => mail.received().filter((m) => m.to.includes(email)).length
        const deadLettered = Effect.map(
          sql`
            SELECT 1 FROM kpipe_failed_events
            WHERE topic = ${topics.orderStatus.name} AND convert_from(message_key, 'UTF8') = ${String(userId)}`,
          (rows) => rows.length > 0
        )
        const placed = yield* Effect.scoped(Effect.gen(function*() {
          yield* recordingFails(
            `fail_deliveries_${userId}`,
            `EXISTS (SELECT 1 FROM orders o WHERE o.order_id = NEW.order_id AND o.user_id = ${userId})`
          )
          const placed = yield* place(userId, productId, 1)
          // The policy allows 3 attempts: a fourth one, or a dead letter, settles which way it went.
          yield* eventually(
            Effect.map(deadLettered, (dead) => dead || attempts() >= 4),
            "30 seconds",
            "a fourth attempt or a dead letter"
          )
          return placed
        }))
        assert.isFalse(yield* deadLettered, "the event was dead-lettered")
        const order = yield* settled(userId, placed.orderId)
        assert.strictEqual(order.status, "CONFIRMED")
        assert.isFalse(yield* deadLettered, "the event was dead-lettered")
        const offsets = yield* admin.endOffsets(topics.orderStatus.deadLetter.name)
        assert.deepStrictEqual(offsets.map((partition) => partition.high), offsets.map(() => "0"))
      }))
  }
)
