import { assert, describe, it } from "@effect/vitest"
import { DDayApi } from "@kpipe/contracts"
import { DDays } from "@kpipe/dday-service"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import {
  ddayCount,
  eventually,
  isolated,
  processedCount,
  reference,
  signIn,
  startAuthService,
  startMemberSync,
  TestLive
} from "./utils.ts"

describe("S1 end to end", () => {
  it.live(
    "auth-service's outbox relay → member-events → d-day-service: sign-in, rename and deletion reach the copy",
    () =>
      Effect.gen(function*() {
        const { group, prefix, topic } = yield* isolated("s1")
        const auth = yield* startAuthService({ prefix, relay: true })
        yield* startMemberSync({ topic, group, authUrl: auth.baseUrl })
        const ddays = yield* DDays.DDays

        const { member } = yield* auth.members.signIn(signIn("sub-e2e", "frank", "frank@example.com"))
        const id = member.memberId
        yield* eventually(Effect.map(reference(id), (held) => held !== undefined))
        assert.deepInclude(yield* reference(id), { nickname: "frank", email: "frank@example.com", status: "ACTIVE" })
        yield* ddays.create(
          id,
          new DDayApi.CreateDDayRequest({ title: "launch", targetDate: DDayApi.LocalDate.make("2032-01-01") })
        )

        yield* auth.members.updateProfile(id, { nickname: "francis" })
        yield* eventually(Effect.map(reference(id), (held) => held?.nickname === "francis"))

        const gone = yield* auth.members.delete(id)
        yield* eventually(Effect.map(reference(id), (held) => held?.status === "DELETED"))
        assert.strictEqual((yield* reference(id))!.sourceUpdatedAt.getTime(), gone.updatedAt.epochMillis)
        assert.strictEqual(yield* ddayCount(id), 0)
        assert.strictEqual(yield* processedCount(group), 3)
        const listed = yield* ddays.list(id).pipe(Effect.flip)
        assert.strictEqual(listed._tag, "MemberGone")
      }).pipe(Effect.scoped, Effect.provide(DDays.DDays.Default.pipe(Layer.provideMerge(TestLive)))),
    { timeout: 60_000 }
  )
})
