import { assert, describe, it } from "@effect/vitest"
import { Fuzz, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("order-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({ name: "order-service", entry })
        const user = [["X-User-Id", "42"]] as const
        const identity = ["X-User-Id"]
        const templates: ReadonlyArray<Fuzz.Template> = [
          { method: "POST", path: "/api/orders", headers: user, identity, body: { productId: 1, quantity: 2 } },
          { method: "GET", path: "/api/orders/1", headers: user, identity },
          { method: "GET", path: "/api/users/me/orders?page=1&pageSize=10", headers: user, identity }
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
