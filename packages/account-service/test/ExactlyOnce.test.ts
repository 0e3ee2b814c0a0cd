import { describe, it } from "@effect/vitest"
import { LoginStats, Migrations, Workers } from "@kpipe/account-service"
import { SeedTopics } from "@kpipe/contracts"
import type { LoginEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { ExactlyOnce, TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { login } from "./utils.ts"

interface Variant {
  readonly batchSize: number
}

// One event per transaction, and the default batch.
const variants: ReadonlyArray<Variant> = [{ batchSize: 1 }, { batchSize: 100 }]

const topics = new Map<string, Workers.LoginTopic>()
const runPrefix = `${TestKafka.uniqueName("eo-logins")}.`
const base = Date.now()

const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest([...Migrations.all, ExactlyOnce.appliedTable]))

const exactlyOnce = ExactlyOnce.property<LoginEvents.LoginSucceeded, Variant, Layer.Layer.Success<typeof TestLive>>({
  topic: Effect.suspend(() => {
    const topic = Topic.prefixed(SeedTopics.loginEvents, `${TestKafka.uniqueName("eo-logins")}.`)
    topics.set(topic.name, topic)
    return Effect.as(Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic]))), topic.name)
  }),
  event: (index) => login(runPrefix, 1 + (index % 5), index, base + index),
  encode: (event) =>
    Effect.map(SeedTopics.loginEvents.encode(event), (value) => ({ key: String(event.accountId), value })),
  consumer: ({ group, hold, topic, variant }) =>
    ExactlyOnce.replica(
      IdempotentConsumer.run,
      Workers.loginConsumerOptions({
        topic: topics.get(topic)!,
        groupId: group,
        replica: 1,
        batchSize: variant.batchSize,
        kafka: TestKafka.fastConsumer
      }),
      { group, hold }
    ).pipe(Layer.provide(Layer.merge(DeadLetter.layer, LoginStats.LoginStats.Default))),
  applied: ExactlyOnce.appliedIn,
  duplicates: (group) => ExactlyOnce.taggedCount(IdempotentConsumer.duplicatesTotal, group),
  variants
})

describe("login consumer", () => {
  it.live.prop(
    "counts each distinct login once per group, whatever the duplicates, order, stopped replica and replay",
    ExactlyOnce.arbitraries(variants),
    ([sample]) => exactlyOnce(sample).pipe(Effect.provide(TestLive)),
    { timeout: 300_000, fastCheck: ExactlyOnce.runs(variants, 2) }
  )
})
