import { assert, describe, it } from "@effect/vitest"
import { Fuzz, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("auth-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({ name: "auth-service", entry })
        const signIn = { provider: "google", subject: "fuzz", nickname: "Fuzz", email: "fuzz@example.com" }
        const signedIn = yield* RawHttp.exchange(service.port, {
          method: "POST",
          path: "/api/auth/sign-in",
          headers: [["Content-Type", "application/json"]],
          body: JSON.stringify(signIn)
        })
        assert.strictEqual(signedIn.status, 200, JSON.stringify(signedIn.body))
        const { member, session } = signedIn.body as { member: { memberId: number }; session: { token: string } }
        const auth = [["Authorization", `Bearer ${session.token}`]] as const
        const identity = ["Authorization"]
        const templates: ReadonlyArray<Fuzz.Template> = [
          { method: "POST", path: "/api/auth/sign-in", body: signIn },
          {
            method: "PATCH",
            path: `/api/members/${member.memberId}`,
            headers: auth,
            identity,
            body: { nickname: "B" }
          },
          { method: "POST", path: `/api/members/${member.memberId}/login`, headers: auth, identity },
          { method: "DELETE", path: `/api/members/${member.memberId}`, headers: auth, identity }
        ]
        yield* Fuzz.check(service.port, Fuzz.mutants(templates), { runs: 300 })

        const oversized = yield* RawHttp.exchange(service.port, {
          method: "POST",
          path: "/api/auth/sign-in",
          headers: [["Content-Type", "application/json"]],
          body: JSON.stringify({ ...signIn, nickname: "x".repeat(100 * 1024) })
        })
        assert.deepStrictEqual([oversized.status, oversized.tag], [413, "PayloadTooLarge"])
        const live = yield* RawHttp.exchange(service.port, { method: "GET", path: "/health/live" })
        assert.strictEqual(live.status, 200)
        assert.isTrue(yield* service.isRunning)
        assert.notMatch(service.output(), /defect|Fiber terminated|ERROR/i, service.output())
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
