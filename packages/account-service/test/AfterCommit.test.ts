import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { LoginStats, Workers } from "@kpipe/account-service"
import { SeedTopics } from "@kpipe/contracts"
import { Admin } from "@kpipe/kafka"
import { Publisher, RetryPolicy, Topic, TopicAdmin } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { eventually, login, processedCount, processedLine, TestLive } from "./utils.ts"

const gate = 4343

/** Sessions of this database waiting for a lock while running a statement that matches `pattern`. */
const waitingOnLock = (pattern: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE ${pattern}`).pipe(
      Effect.map((rows) => rows[0]!.n > 0)
    )

describe("the Login event processed line", () => {
  it.live(
    "is logged once per applied event, only after its COMMIT, never for an attempt that rolled back",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const lines: Array<string> = []
        const recorder = Logger.make(({ message }) => {
          const text = Array.isArray(message) ? message.join(" ") : String(message)
          if (processedLine.test(text)) lines.push(text)
        })
        const prefix = `${TestKafka.uniqueName("aftercommit")}.`
        const topic = { ...Topic.prefixed(SeedTopics.loginEvents, prefix), partitions: 1 }
        yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
        const group = `${prefix}account-service`
        const gated = login(prefix, 1, 1, Date.now())
        const failing = login(`failing-${prefix}`, 2, 1, Date.now() + 1)
        const line = (event: typeof gated) =>
          `Login event processed: accountId=${event.accountId} sessionId=${event.sessionId}`

        // COMMIT of the gated login waits on an advisory lock the test holds (a deferred trigger runs at COMMIT);
        // the failing login's first attempt fails inside its transaction.
        yield* sql`CREATE SEQUENCE failing_attempts`
        yield* sql`
        CREATE FUNCTION gate_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.last_session_id = ${sql.literal(`'${gated.sessionId}'`)} THEN
            PERFORM pg_advisory_xact_lock(${sql.literal(String(gate))});
          END IF;
          RETURN NEW;
        END $$`
        yield* sql`
        CREATE CONSTRAINT TRIGGER gate_commit AFTER INSERT ON account_login_stats
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gate_commit()`
        yield* sql`
        CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.last_session_id LIKE 'failing-%' AND nextval('failing_attempts') = 1 THEN
            RAISE EXCEPTION 'first attempt fails';
          END IF;
          RETURN NEW;
        END $$`
        yield* sql`
        CREATE TRIGGER fail_once BEFORE INSERT ON account_login_stats FOR EACH ROW EXECUTE FUNCTION fail_once()`
        const held = yield* Deferred.make<void>()
        const open = yield* Deferred.make<void>()
        const holder = yield* sql.withTransaction(
          Effect.zipRight(
            sql`SELECT pg_advisory_xact_lock(${gate})`,
            Effect.zipRight(Deferred.succeed(held, undefined), Deferred.await(open))
          )
        ).pipe(Effect.fork)
        yield* Deferred.await(held)

        yield* Effect.scoped(
          Effect.gen(function*() {
            yield* Layer.build(
              Workers.loginConsumer({
                topic,
                groupId: group,
                replica: 3,
                batchSize: 1,
                retry: RetryPolicy.make({ initialDelay: "20 millis", maxRetries: 3 }),
                kafka: TestKafka.fastConsumer
              }).pipe(Layer.provide(LoginStats.LoginStats.Default))
            )
            yield* Publisher.publish(topic, gated)
            // The event was applied and its transaction is committing, held at the gate: no line yet.
            yield* eventually(waitingOnLock("%COMMIT%"), "30 seconds", "the COMMIT held at the gate")
            assert.deepStrictEqual(lines, [])
            assert.strictEqual(yield* processedCount(group), 0)

            yield* Deferred.succeed(open, undefined)
            yield* Fiber.join(holder)
            yield* eventually(Effect.sync(() => lines.length === 1), "30 seconds", "the gated login's line")
            assert.strictEqual(yield* processedCount(group), 1)

            yield* Publisher.publish(topic, failing)
            yield* eventually(
              Effect.map(processedCount(group), (n) => n === 2),
              "30 seconds",
              "the failing login applied"
            )
            yield* eventually(Effect.sync(() => lines.length >= 2), "10 seconds", "the failing login's line")
            // A last event through the same partition: everything before it was announced already.
            const last = login(prefix, 3, 3, Date.now() + 2)
            yield* Publisher.publish(topic, last)
            yield* eventually(Effect.sync(() => lines.length >= 3), "30 seconds", "the last login's line")
            // Opened whatever happens, so that a failed assertion does not leave the consumer's COMMIT waiting.
          }).pipe(Effect.ensuring(Deferred.succeed(open, undefined)))
        ).pipe(
          Effect.provide(
            Layer.merge(Logger.replace(Logger.defaultLogger, recorder), Logger.minimumLogLevel(LogLevel.Info))
          )
        )

        const [attempts] = yield* sql<{ n: string }>`SELECT last_value AS n FROM failing_attempts`
        assert.isAtLeast(Number(attempts!.n), 2)
        assert.deepStrictEqual(lines, [line(gated), line(failing), line(login(prefix, 3, 3, 0))])
      }).pipe(Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})
