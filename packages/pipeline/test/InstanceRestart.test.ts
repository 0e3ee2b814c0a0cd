import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { IdempotentConsumer } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
import {
  appliedBy,
  appliedCount,
  appliedTwice,
  createTopics,
  event,
  eventually,
  makeTopic,
  produce,
  recordApplied,
  TestLive
} from "./utils.ts"

describe("IdempotentConsumer restarted under its instance id", () => {
  it.live(
    "a replica killed with SIGKILL is replaced at once: its successor removes it from the group instead of waiting for its session",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const topic = makeTopic("instance-restart", 3)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("instance-restart")
        const events = Array.from({ length: 60 }, (_, i) => event(`k${i % 6}`, i))
        const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
        const url = Database.withDatabase(Redacted.value(yield* Database.url), current!.database)
        // Without the removal, the successor's join waits for this session to time out.
        const sessionTimeout = 20_000

        const replica = yield* ServiceProcess.start({
          name: "replica",
          entry: fileURLToPath(new URL("fixtures/replica.ts", import.meta.url)),
          args: ["consumer", topic.name, group],
          env: { DATABASE_URL: url, INSTANCE_ID: "replica-1", SESSION_TIMEOUT_MS: String(sessionTimeout) },
          ready: "ready",
          readyTimeout: "30 seconds"
        })
        yield* produce(topic, events.slice(0, 30))
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 30))
        yield* replica.kill
        const killedAt = Date.now()
        yield* produce(topic, events.slice(30))

        yield* Effect.scoped(Effect.gen(function*() {
          // Returns once the member joined the group.
          yield* IdempotentConsumer.run({
            topic,
            groupId: group,
            handle: recordApplied(group, "successor"),
            errors: { SqlError: "retry" },
            kafka: { ...TestKafka.fastConsumer, rebalanceTimeout: 60_000, instanceId: "replica-1" }
          })
          const joinedAfter = Date.now() - killedAt
          assert.isBelow(joinedAfter, sessionTimeout / 2, `joined ${joinedAfter} ms after the kill`)
          yield* eventually(Effect.map(appliedCount(group), (n) => n === events.length))
        }))
        assert.strictEqual(yield* appliedBy(group, "successor"), 30)
        assert.deepStrictEqual(yield* appliedTwice(group), [])
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})
