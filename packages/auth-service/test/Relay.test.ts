import { assert, describe, it } from "@effect/vitest"
import { SeedTopics } from "@kpipe/contracts"
import { UpdateProfileRequest } from "@kpipe/contracts/AuthApi"
import { OutboxRelay, Topic } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Topics from "../src/Topics.ts"
import { client, signInRequest, TestLive } from "./utils.ts"

/** Reads `topic` from the beginning in a throwaway group until `count` records arrived. */
const readTopic = (topic: string, count: number) => TestKafka.readTopic(topic, count, "300 millis")

const drain = OutboxRelay.drain()

describe("auth-service through Kafka", () => {
  it.live("the relay publishes member events keyed by memberId in order, and logins keyed by accountId", () => {
    const prefix = `${TestKafka.uniqueName("auth")}.`
    const members = Topic.prefixed(SeedTopics.memberEvents, prefix)
    const logins = Topic.prefixed(SeedTopics.loginEvents, prefix)
    const Prefixed = Layer.setConfigProvider(
      ConfigProvider.fromMap(new Map([["TOPIC_PREFIX", prefix]])).pipe(
        ConfigProvider.orElse(() => ConfigProvider.fromEnv())
      )
    )
    return Effect.gen(function*() {
      const api = yield* client
      const alice = (yield* api.members.signIn({ payload: signInRequest("alice", { nickname: "Alice" }) })).member
      const bob = (yield* api.members.signIn({ payload: signInRequest("bob", { nickname: "Bob" }) })).member
      for (const nickname of ["Alice 2", "Alice 3"]) {
        yield* api.members.updateProfile({
          path: { memberId: alice.memberId },
          payload: new UpdateProfileRequest({ nickname })
        })
      }
      yield* api.members.updateProfile({
        path: { memberId: bob.memberId },
        payload: new UpdateProfileRequest({ email: "bob@example.com" })
      })
      const session = yield* api.members.login({ path: { memberId: alice.memberId } })
      yield* api.members.deleteMember({ path: { memberId: alice.memberId } })

      assert.strictEqual(yield* drain, 7)
      assert.strictEqual((yield* OutboxRelay.stats).pending, 0)

      const records = yield* readTopic(members.name, 6)
      assert.strictEqual(records.length, 6)
      const decode = Schema.decodeSync(Schema.parseJson(SeedTopics.memberEvents.schema))
      // Content, not just types: the two MemberUpdated of alice must not be able to swap.
      const byKey = new Map<string, Array<string>>()
      for (const record of records) {
        const event = decode(record.value!.toString("utf8"))
        const key = record.key!.toString("utf8")
        assert.strictEqual(key, String(event.memberId))
        assert.strictEqual(record.headers["kpipe-event-id"], event.eventId)
        const content = event.type === "MemberDeleted"
          ? event.type
          : event.type === "MemberCreated"
          ? `${event.type} ${event.nickname} ${event.email ?? "-"}`
          : `${event.type} ${event.nickname} ${event.changedFields.join(",")}`
        byKey.set(key, [...(byKey.get(key) ?? []), content])
      }
      assert.deepStrictEqual(byKey.get(String(alice.memberId)), [
        "MemberCreated Alice -",
        "MemberUpdated Alice 2 nickname",
        "MemberUpdated Alice 3 nickname",
        "MemberDeleted"
      ])
      assert.deepStrictEqual(byKey.get(String(bob.memberId)), [
        "MemberCreated Bob -",
        "MemberUpdated Bob email"
      ])

      const [login] = yield* readTopic(logins.name, 1)
      assert.strictEqual(login!.key!.toString("utf8"), String(alice.memberId))
      const event = Schema.decodeSync(Schema.parseJson(SeedTopics.loginEvents.schema))(login!.value!.toString("utf8"))
      assert.strictEqual(event.sessionId, session.sessionId)
      assert.strictEqual(
        event.eventId,
        `login:${alice.memberId}:${session.sessionId}:${session.loggedInAt.epochMillis}`
      )
    }).pipe(
      Effect.provide(TestLive.pipe(
        Layer.provideMerge(Topics.layer),
        Layer.provideMerge(TestKafka.layer),
        Layer.provide(Prefixed)
      ))
    )
  }, { timeout: 60_000 })
})
