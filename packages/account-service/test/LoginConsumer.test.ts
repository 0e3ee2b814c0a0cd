import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { LoginStats, Migrations, Workers } from "@kpipe/account-service"
import { SeedTopics } from "@kpipe/contracts"
import { Admin } from "@kpipe/kafka"
import { Publisher, RetryPolicy, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { committedTotal, eventually, login, processedCount, processedLine } from "./utils.ts"

// The poison login fails its first attempt only (a sequence is not rolled back with the batch).
const poisonOnce = {
  table: "poison_migrations",
  loader: Migrator.fromRecord({
    "0001_poison_once": Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE SEQUENCE poison_attempts`
      yield* sql`
        CREATE FUNCTION poison_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.last_session_id LIKE 'poison-%' AND nextval('poison_attempts') = 1 THEN
            RAISE EXCEPTION 'poisoned once';
          END IF;
          RETURN NEW;
        END $$`
      yield* sql`
        CREATE TRIGGER poison_once BEFORE INSERT ON account_login_stats
        FOR EACH ROW EXECUTE FUNCTION poison_once()`
    })
  })
}

const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest([...Migrations.all, poisonOnce]))

describe("LoginConsumer", () => {
  it.live(
    "counts each login once and logs it once, after commit: a rolled-back batch logs nothing",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const lines: Array<string> = []
        const recorder = Logger.make(({ message }) => {
          const text = Array.isArray(message) ? message.join(" ") : String(message)
          if (processedLine.test(text)) lines.push(text)
        })
        const prefix = `${TestKafka.uniqueName("logins")}.`
        // One partition, so the whole stream is one batch and one transaction.
        const topic = { ...Topic.prefixed(SeedTopics.loginEvents, prefix), partitions: 1 }
        yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
        const group = `${prefix}account-service`
        const base = Date.now()
        const before = Array.from({ length: 6 }, (_, i) => login(prefix, 1 + (i % 3), i, base + i))
        const poison = login(`poison-${prefix}`, 99, 0, base + 10)
        const after = Array.from({ length: 4 }, (_, i) => login(prefix, 1 + (i % 2), 10 + i, base + 20 + i))
        const distinct = [...before, poison, ...after]
        const deliveries = [...before, poison, ...after, before[0]!, after[3]!]

        yield* Effect.scoped(Effect.gen(function*() {
          yield* Layer.build(
            Workers.loginConsumer({
              topic,
              groupId: group,
              replica: 7,
              retry: RetryPolicy.make({ initialDelay: "20 millis", maxRetries: 3 }),
              kafka: TestKafka.fastConsumer
            }).pipe(Layer.provide(LoginStats.LoginStats.Default))
          )
          yield* Publisher.publish(topic, ...deliveries)
          yield* eventually(Effect.map(committedTotal(group, topic.name), (n) => n === deliveries.length))
        })).pipe(
          Effect.provide(
            Layer.merge(Logger.replace(Logger.defaultLogger, recorder), Logger.minimumLogLevel(LogLevel.Info))
          )
        )

        assert.strictEqual(yield* processedCount(group), distinct.length)
        const [sequence] = yield* sql<{ attempts: string }>`SELECT last_value AS attempts FROM poison_attempts`
        assert.isAtLeast(Number(sequence!.attempts), 2)
        const stats = yield* sql<{ accountId: string; loginCount: string; lastSessionId: string }>`
          SELECT account_id, login_count, last_session_id FROM account_login_stats ORDER BY account_id`
        assert.deepStrictEqual(stats.map((row) => [Number(row.accountId), Number(row.loginCount), row.lastSessionId]), [
          [1, 4, after[2]!.sessionId],
          [2, 4, after[3]!.sessionId],
          [3, 2, before[5]!.sessionId],
          [99, 1, poison.sessionId]
        ])
        assert.deepStrictEqual(
          [...lines].sort(),
          distinct.map((e) => `Login event processed: accountId=${e.accountId} sessionId=${e.sessionId}`).sort()
        )
      }).pipe(Effect.provide(TestLive)),
    { timeout: 60_000 }
  )
})
