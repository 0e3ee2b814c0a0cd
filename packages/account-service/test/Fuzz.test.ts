import { assert, describe, it } from "@effect/vitest"
import { Fuzz, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("account-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({ name: "account-service", entry })
        const templates: ReadonlyArray<Fuzz.Template> = [{ method: "GET", path: "/api/accounts/12/logins" }]
        yield* Fuzz.check(service.port, Fuzz.mutants(templates), { runs: 300 })
        const live = yield* RawHttp.exchange(service.port, { method: "GET", path: "/health/live" })
        assert.strictEqual(live.status, 200)
        assert.isTrue(yield* service.isRunning)
        assert.notMatch(service.output(), /defect|Fiber terminated|ERROR/i, service.output())
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
