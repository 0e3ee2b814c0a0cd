import { assert, describe, it } from "@effect/vitest"
import { DatabaseFaults, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { client, signInRequest, TestLive } from "./utils.ts"

describe("auth-service without its database", () => {
  it.live("answers 503 ServiceUnavailable, not 500", () =>
    Effect.gen(function*() {
      const api = yield* client
      const { member } = yield* api.members.signIn({ payload: signInRequest("before-outage") })
      yield* DatabaseFaults.cutOff

      const signIn = yield* api.members.signIn({ payload: signInRequest("during-outage") }).pipe(Effect.flip)
      assert.strictEqual(signIn._tag, "ServiceUnavailable")
      const login = yield* api.members.login({ path: { memberId: member.memberId } }).pipe(Effect.flip)
      assert.strictEqual(login._tag, "ServiceUnavailable")
      const raw = yield* RawHttp.request("GET", `/api/members/${member.memberId}`)
      assert.strictEqual(raw.status, 503)
      assert.strictEqual(raw.tag, "ServiceUnavailable")
    }).pipe(Effect.provide(TestLive)), { timeout: 30_000 })
})
