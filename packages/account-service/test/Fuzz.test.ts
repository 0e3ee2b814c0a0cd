import { describe, it } from "@effect/vitest"
import { Fuzz } from "@kpipe/testing"
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
        yield* Fuzz.survived(service)
      }).pipe(Effect.scoped),
    { timeout: 180_000 }
  )
})
