import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import { AuthApi } from "@kpipe/contracts"
import { SeedTopics } from "@kpipe/contracts"
import { Ids, MemberEvents } from "@kpipe/events"
import { Publisher, Topic } from "@kpipe/pipeline"
import { ServiceProcess, TestKafka, TestLogging, Webhook } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import { fileURLToPath } from "node:url"
import { gatewayClient, memberClient, scratchDatabase } from "./utils.ts"

const authMain = fileURLToPath(new URL("../../auth-service/src/main.ts", import.meta.url))
const ddayMain = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** Polls `effect` (failures count as "not yet") until its value satisfies `until`, for 45 s at most. */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (a: A) => boolean) =>
  effect.pipe(
    Effect.filterOrFail(until, () => new Error("not yet")),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeout("45 seconds")
  )

describe("S1 with real processes", () => {
  it.live(
    "d-day-service down while members change catches up when it is back; a permanent failure reaches the DLT and the alert webhook",
    () =>
      Effect.gen(function*() {
        const prefix = `${TestKafka.uniqueName("s1p")}.`
        const hook = yield* Webhook.make
        const auth = yield* ServiceProcess.start({
          name: "auth-service",
          entry: authMain,
          env: { DATABASE_URL: yield* scratchDatabase("auth"), PORT: "0", TOPIC_PREFIX: prefix }
        })
        const ddayEnv = {
          DATABASE_URL: yield* scratchDatabase("dday"),
          PORT: "0",
          TOPIC_PREFIX: prefix,
          AUTH_SERVICE_URL: auth.baseUrl,
          ALERT_WEBHOOK_URL: hook.url
        }
        const members = yield* memberClient(auth.baseUrl)
        const signIn = (subject: string, nickname: string) =>
          members.signIn(new AuthApi.SignInRequest({ provider: "github", subject, nickname }))

        const first = yield* ServiceProcess.start({ name: "d-day-service", entry: ddayMain, env: ddayEnv })
        const copyAt = (baseUrl: string) =>
          Effect.map(gatewayClient({ baseUrl }), (client) => (memberId: Ids.MemberId) =>
            client.members.getMember({ path: { memberId } }))
        const alice = (yield* signIn("alice", "alice")).member
        const copyBefore = yield* copyAt(first.baseUrl)
        yield* eventually(copyBefore(alice.memberId), (copy) =>
          copy.nickname === "alice")
        assert.strictEqual(yield* first.stop, 0)

        // While d-day-service is down, members keep changing.
        const bob = (yield* signIn("bob", "bob")).member
        const carol = (yield* signIn("carol", "carol")).member
        yield* members.updateProfile(alice.memberId, { nickname: "alicia" })
        yield* members.delete(bob.memberId)
        yield* members.updateProfile(carol.memberId, { nickname: "caroline" })

        const second = yield* ServiceProcess.start({ name: "d-day-service", entry: ddayMain, env: ddayEnv })
        const copy = yield* copyAt(second.baseUrl)
        yield* eventually(copy(alice.memberId), (held) => held.nickname === "alicia")
        yield* eventually(copy(bob.memberId), (held) => held.status === "DELETED")
        yield* eventually(copy(carol.memberId), (held) => held.nickname === "caroline" && held.status === "ACTIVE")

        // A change to a member auth-service never had cannot be applied: dead-lettered, alerted.
        const stranger = new MemberEvents.MemberUpdated({
          eventId: Ids.EventId.make(crypto.randomUUID()),
          memberId: Ids.MemberId.make(987_654),
          occurredAt: DateTime.unsafeNow(),
          nickname: "nobody",
          changedFields: ["nickname"]
        })
        yield* Publisher.publish(Topic.prefixed(SeedTopics.memberEvents, prefix), stranger)
        const alert = (yield* Queue.take(hook.received).pipe(Effect.timeout("45 seconds"))) as {
          readonly text: string
          readonly details: Record<string, unknown>
        }
        assert.include(alert.text, `${prefix}member-events`)
        assert.strictEqual(alert.details["eventId"], stranger.eventId)
        assert.strictEqual(yield* second.stop, 0)
        assert.strictEqual(yield* auth.stop, 0)
      }).pipe(
        Effect.scoped,
        Effect.provide(Layer.mergeAll(TestKafka.layer, NodeHttpClient.layerUndici, TestLogging.layer))
      ),
    { timeout: 120_000 }
  )
})
