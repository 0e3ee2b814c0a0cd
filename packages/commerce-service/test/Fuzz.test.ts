import { describe, it } from "@effect/vitest"
import { Fuzz } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("commerce-service under malformed requests", () => {
  it.live(
    "every broken request is a typed 4xx (an oversized body a 413), none a 5xx, and the process lives on",
    () =>
      Effect.gen(function*() {
        const service = yield* Fuzz.service({
          name: "commerce-service",
          entry,
          env: { ADMIN_TOKEN: "fuzz-admin-token" }
        })
        const admin = [["Authorization", "Bearer fuzz-admin-token"]] as const
        const user = [["X-User-Id", "42"]] as const
        const identity = ["X-User-Id"]
        const templates: ReadonlyArray<Fuzz.Template> = [
          {
            method: "POST",
            path: "/api/products",
            headers: admin,
            identity: ["Authorization"],
            body: { name: "Fuzz", price: "12.50" }
          },
          { method: "GET", path: "/api/products?after=1&limit=10" },
          { method: "GET", path: "/api/products/1" },
          { method: "POST", path: "/api/products/1/views", headers: user, identity },
          {
            method: "GET",
            path: "/api/product-totals?after=1&limit=10",
            headers: admin,
            identity: ["Authorization"]
          },
          { method: "PUT", path: "/api/products/1/like", headers: user, identity },
          { method: "DELETE", path: "/api/products/1/like", headers: user, identity },
          {
            method: "POST",
            path: "/api/orders",
            headers: user,
            identity,
            body: { items: [{ productId: 1, quantity: 1 }] }
          },
          { method: "GET", path: "/api/orders/1", headers: user, identity },
          { method: "POST", path: "/api/orders/1/pay", headers: user, identity },
          { method: "POST", path: "/api/orders/1/cancel", headers: user, identity }
        ]
        yield* Fuzz.check(service.port, Fuzz.mutants(templates), { runs: 300 })
        yield* Fuzz.survived(service)
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
