import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { App, Config, Migrations, Workers } from "@kpipe/dday-service"
import type { MemberEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ExactlyOnce, TestKafka, TestLogging } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { closedUrl, created, deleted, updated, withConfig } from "./utils.ts"

interface Variant {
  readonly batchSize: number
}

// One event per transaction, and the default batch.
const variants: ReadonlyArray<Variant> = [{ batchSize: 1 }, { batchSize: 100 }]

const topics = new Map<string, Workers.MemberTopic>()
const base = Date.now()
const members = 5

// Created, then updated, then deleted, whatever order they arrive in: the members are known
// already (so no event needs auth-service), and each event is newer than what is held.
const event = (index: number) => {
  const memberId = 1 + (index % members)
  const time = base + index
  return index < 5
    ? created(memberId, time, `member-${index}`)
    : index < 10
    ? updated(memberId, time, `renamed-${index}`)
    : deleted(memberId, time)
}

const known = Effect.flatMap(SqlClient, (sql) =>
  sql`
    INSERT INTO member_references ${
    sql.insert(Array.from({ length: members }, (_, i) => ({
      memberId: 1 + i,
      nickname: `known-${i}`,
      status: "ACTIVE",
      sourceUpdatedAt: new Date(base - 60_000)
    })))
  }`)

const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest([...Migrations.all, ExactlyOnce.appliedTable]))
  .pipe(
    Layer.provideMerge(TestLogging.layer)
  )

const exactlyOnce = ExactlyOnce.property<MemberEvents.MemberEvent, Variant, Layer.Layer.Success<typeof TestLive>>({
  topic: Effect.gen(function*() {
    const topic = Topic.prefixed(SeedTopics.memberEvents, `${TestKafka.uniqueName("eo-members")}.`)
    topics.set(topic.name, topic)
    yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
    yield* known
    return topic.name
  }),
  event,
  encode: (e) => Effect.map(SeedTopics.memberEvents.encode(e), (value) => ({ key: String(e.memberId), value })),
  consumer: ({ group, hold, topic, variant }) =>
    ExactlyOnce.replica(
      IdempotentConsumer.run,
      Workers.memberEventsConsumerOptions({
        topic: topics.get(topic)!,
        groupId: group,
        batchSize: variant.batchSize,
        kafka: TestKafka.fastConsumer
      }),
      { group, hold }
    ).pipe(
      Layer.provide(Layer.merge(DeadLetter.layer, App.services)),
      Layer.provide(Layer.merge(NodeHttpClient.layerUndici, Config.layerFromEnv))
    ),
  applied: ExactlyOnce.appliedIn,
  duplicates: (group) => ExactlyOnce.taggedCount(IdempotentConsumer.duplicatesTotal, group),
  variants
})

describe("member-events consumer", () => {
  it.live.prop(
    "applies each distinct member event once per group, whatever the duplicates, order, stopped replica and replay",
    ExactlyOnce.arbitraries(variants),
    ([sample]) => exactlyOnce(sample).pipe(Effect.provide(TestLive), withConfig({ AUTH_SERVICE_URL: closedUrl })),
    { timeout: 300_000, fastCheck: ExactlyOnce.runs(variants, 2) }
  )
})
