import * as Command from "@effect/platform/Command"
import type { PlatformError } from "@effect/platform/Error"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { ServiceProcess } from "@kpipe/devtools"
import { Admin } from "@kpipe/kafka"
import { IdempotentConsumer, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { TestKafka } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  appliedCount,
  createTopics,
  event,
  eventually,
  makeTopic,
  produce,
  recordApplied,
  type TestEvent,
  TestLive
} from "./utils.ts"

class Rejected extends Data.TaggedError("Rejected")<{ readonly key: string }> {}

const script = fileURLToPath(new URL("../../../scripts/kpipe.ts", import.meta.url))

const text = (stream: Stream.Stream<Uint8Array, PlatformError>) => stream.pipe(Stream.decodeText(), Stream.mkString)

/** Runs `pnpm kpipe …` as an operator would, on the test's database; its exit code and output. */
const kpipe = (databaseUrl: string, ...args: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const process_ = yield* Command.start(
      Command.make(process.execPath, script, ...args).pipe(
        Command.env({ DATABASE_URL: databaseUrl, KPIPE_ACTOR: "cli-test" })
      )
    )
    const [stdout, stderr, code] = yield* Effect.all(
      [text(process_.stdout), text(process_.stderr), process_.exitCode],
      { concurrency: 3 }
    )
    return { code: Number(code), stdout, stderr }
  })).pipe(Effect.timeout("60 seconds"), Effect.orDie, Effect.provide(ServiceProcess.executorLayer))

describe("pnpm kpipe", () => {
  it.live(
    "lists groups, dry-runs and redrives with a canary; exit codes say what happened",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const [{ name }] = (yield* sql<{ name: string }>`SELECT current_database() AS name`) as [{ name: string }]
        const url = Database.withDatabase(Redacted.value(yield* Database.url), name)
        const topic = makeTopic("cli", 1)
        yield* createTopics(topic)
        const group = TestKafka.uniqueName("cli-group")
        const broken = new Set(["bad"])
        yield* IdempotentConsumer.run<TestEvent, typeof TestEvent.Encoded, Rejected | SqlError, SqlClient>({
          topic,
          groupId: group,
          handle: (e) => broken.has(e.key) ? Effect.fail(new Rejected({ key: e.key })) : recordApplied(group)(e),
          errors: { Rejected: "deadLetter", SqlError: "retry" },
          kafka: TestKafka.fastConsumer
        })
        yield* produce(topic, [event("bad", 1), event("bad", 2)])
        yield* eventually(Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM kpipe_failed_events WHERE status = 'OPEN'`,
          (rows) => rows[0]!.n === 2
        ))

        const groups = yield* kpipe(url, "failures", "groups", "--json")
        assert.strictEqual(groups.code, 0, groups.stderr)
        assert.deepInclude(JSON.parse(groups.stdout)[0], { topic: topic.name, errorTag: "Rejected", count: 2 })
        const table = yield* kpipe(url, "failures", "list", "--topic", topic.name)
        assert.strictEqual(table.code, 0)
        assert.include(table.stdout, "Rejected")

        const dry = yield* kpipe(url, "redrive", "--dry-run", "--topic", topic.name, "--json")
        assert.strictEqual(dry.code, 0, dry.stderr)
        const { count, dryRunId } = JSON.parse(dry.stdout)
        assert.strictEqual(count, 2)

        const changed = yield* kpipe(url, "redrive", "--topic", topic.name, "--expect", "3")
        assert.strictEqual(changed.code, 2)
        assert.include(changed.stderr, "3 were expected")

        broken.clear()
        const run = yield* kpipe(
          url,
          "redrive",
          "--from-dry-run",
          dryRunId,
          "--rate",
          "50/s",
          "--canary",
          "1",
          "--json"
        )
        assert.strictEqual(run.code, 0, run.stderr)
        assert.deepInclude(JSON.parse(run.stdout), { status: "SUCCEEDED", redriven: 2 })
        yield* eventually(Effect.map(appliedCount(group), (n) => n === 2))

        const lag = yield* kpipe(url, "lag", "--group", group, "--topic", topic.name, "--json")
        assert.strictEqual(lag.code, 0, lag.stderr)
        assert.strictEqual(JSON.parse(lag.stdout)[0].topic, topic.name)

        const payloadFile = join(tmpdir(), `kpipe-edit-${crypto.randomUUID()}.json`)
        writeFileSync(payloadFile, JSON.stringify({ type: "TestEvent", version: 1, eventId: "x", key: "k", seq: 1 }))
        const unswitched = yield* kpipe(url, "failures", "edit", "1", "--payload", payloadFile)
        assert.strictEqual(unswitched.code, 2)
        assert.include(unswitched.stderr, "allowEdit is not set")
        assert.strictEqual((yield* kpipe(url, "failures", "show", "999999")).code, 2)
        assert.strictEqual((yield* kpipe(url, "outbox", "retry", "999999")).code, 2)
        assert.strictEqual((yield* kpipe(url, "redrive", "--no-such-option")).code, 1)
        const audit = yield* kpipe(url, "audit", "--json")
        assert.includeMembers(
          JSON.parse(audit.stdout).map((entry: { action: string }) => entry.action),
          ["redrive-dry-run", "redrive", "outbox-retry"]
        )
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 180_000 }
  )

  it.live(
    "topics verify: exit 4 with each difference from the registry, 0 once the live topics are as declared",
    () =>
      Effect.gen(function*() {
        const admin = yield* Admin.Admin
        const prefix = `${TestKafka.uniqueName("verify")}.`
        const topics = SeedTopics.all.map((topic) => Topic.prefixed(topic, prefix))
        const missing = yield* kpipe("postgres://unused", "topics", "verify", "--prefix", prefix, "--json")
        assert.strictEqual(missing.code, 4, missing.stderr)
        const reported = JSON.parse(missing.stdout) as { mismatches: ReadonlyArray<{ topic: string; setting: string }> }
        assert.strictEqual(reported.mismatches.filter((m) => m.setting === "exists").length, topics.length * 2)

        yield* TopicAdmin.create(topics)
        const declared = yield* kpipe("postgres://unused", "topics", "verify", "--prefix", prefix)
        assert.strictEqual(declared.code, 0, declared.stdout + declared.stderr)

        const changed = topics[0]!
        yield* admin.deleteTopics([changed.name])
        // The broker deletes in the background: created again before that, the old topic would stay.
        yield* eventually(
          Effect.map(admin.listTopics, (names) => !names.includes(changed.name)),
          "30 seconds",
          "the topic deleted"
        )
        yield* admin.createTopics([{ name: changed.name, partitions: changed.partitions + 1 }])
        yield* eventually(
          Effect.map(admin.describeTopics([changed.name]), ([topic]) =>
            topic?.partitions.length === changed.partitions + 1),
          "30 seconds",
          "the topic created again with one partition more"
        )
        const differs = yield* kpipe("postgres://unused", "topics", "verify", "--prefix", prefix)
        assert.strictEqual(differs.code, 4)
        const row = (setting: string, expected: string | number, actual: string | number) =>
          new RegExp(
            `${changed.name.replace(/\./g, "\\.")}\\s+${setting.replace(/\./g, "\\.")}\\s+${expected}\\s+${actual}`
          )
        assert.match(differs.stdout, row("partitions", changed.partitions, changed.partitions + 1))
        // Created with the broker's defaults: its segments roll after 7 days, so a record would stay
        // readable for up to a week past the retention its consumers' claims are kept for.
        assert.match(differs.stdout, row("segment.ms", 24 * 60 * 60 * 1000, 7 * 24 * 60 * 60 * 1000))
        yield* admin.deleteTopics(topics.flatMap((topic) => [topic.name, topic.deadLetter.name]))
      }).pipe(Effect.provide(TestLive)),
    { timeout: 120_000 }
  )
})
