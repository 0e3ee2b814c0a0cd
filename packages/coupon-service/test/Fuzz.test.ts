import { assert, describe, it } from "@effect/vitest"
import { Fuzz, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("coupon-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({ name: "coupon-service", entry, env: { ADMIN_TOKEN: "fuzz-admin-token" } })
        const admin = [["Authorization", "Bearer fuzz-admin-token"]] as const
        const user = [["X-User-Id", "42"]] as const
        const templates: ReadonlyArray<Fuzz.Template> = [
          {
            method: "POST",
            path: "/api/admin/coupons",
            headers: admin,
            identity: ["Authorization"],
            body: {
              name: "Fuzz",
              totalQuantity: 10,
              validFrom: "2026-01-01T00:00:00Z",
              validUntil: "2030-01-01T00:00:00Z"
            }
          },
          { method: "GET", path: "/api/admin/coupons/1/reconciliation", headers: admin, identity: ["Authorization"] },
          { method: "POST", path: "/api/coupons/1/issue", headers: user, identity: ["X-User-Id"] },
          { method: "GET", path: "/api/coupons/1/issue-status", headers: user, identity: ["X-User-Id"] },
          { method: "GET", path: "/api/users/me/coupons", headers: user, identity: ["X-User-Id"] }
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
