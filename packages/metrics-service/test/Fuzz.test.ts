import { assert, describe, it } from "@effect/vitest"
import { Fuzz, RawHttp } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("metrics-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({
          name: "metrics-service",
          entry,
          env: { COMMERCE_SERVICE_URL: "http://127.0.0.1:9", ADMIN_TOKEN: "fuzz-admin-token" }
        })
        const templates: ReadonlyArray<Fuzz.Template> = [
          { method: "GET", path: "/api/products/ranking?by=likes&window=day&limit=10" },
          { method: "GET", path: "/api/products/1/metrics" }
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
