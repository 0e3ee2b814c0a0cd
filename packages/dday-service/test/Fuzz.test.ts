import { assert, describe, it } from "@effect/vitest"
import { Fuzz, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("d-day-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({
          name: "d-day-service",
          entry,
          env: { AUTH_SERVICE_URL: "http://127.0.0.1:9" }
        })
        const user = [["X-User-Id", "7"]] as const
        const identity = ["X-User-Id"]
        const templates: ReadonlyArray<Fuzz.Template> = [
          {
            method: "POST",
            path: "/api/members/7/ddays",
            headers: user,
            identity,
            body: { title: "Exam", targetDate: "2031-05-01" }
          },
          { method: "GET", path: "/api/members/7/ddays", headers: user, identity },
          { method: "DELETE", path: "/api/members/7/ddays/3", headers: user, identity },
          { method: "GET", path: "/api/members/7", headers: user, identity }
        ]
        yield* Fuzz.check(service.port, Fuzz.mutants(templates), { runs: 300 })
        const live = yield* RawHttp.exchange(service.port, { method: "GET", path: "/health/live" })
        assert.strictEqual(live.status, 200)
        assert.isTrue(yield* service.isRunning)
        assert.notMatch(service.output(), /defect|Fiber terminated|ERROR/i, service.output())
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
