import { assert, describe, it } from "@effect/vitest"
import { ServiceProcess } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import { testEnv } from "./utils.ts"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))

describe("ADMIN_TOKEN", () => {
  it.live(
    "main.ts refuses to start without it outside development mode, and never logs it",
    () =>
      Effect.gen(function*() {
        const { env } = testEnv()
        for (const overrides of [{ ADMIN_TOKEN: "" }, { ADMIN_TOKEN: "", KPIPE_ENV: "production" }]) {
          const refused = yield* ServiceProcess.start({
            name: "coupon-service",
            entry,
            env: { ...env, PORT: "0", ...overrides },
            readyTimeout: "30 seconds"
          }).pipe(Effect.flip)
          assert.strictEqual(refused._tag, "ServiceProcessError")
          assert.include(refused.message, "ADMIN_TOKEN is required")
        }
        const started = yield* ServiceProcess.start({
          name: "coupon-service",
          entry,
          env: { ...env, PORT: "0", ADMIN_TOKEN: "", KPIPE_ENV: "development" },
          readyTimeout: "30 seconds"
        })
        assert.isDefined(started.port, started.output())
        assert.strictEqual(yield* started.stop, 0)
        const secret = yield* ServiceProcess.start({
          name: "coupon-service",
          entry,
          env: { ...env, PORT: "0", ADMIN_TOKEN: "a-secret-never-logged" },
          readyTimeout: "30 seconds"
        })
        assert.strictEqual(yield* secret.stop, 0)
        assert.notInclude(secret.output(), "a-secret-never-logged")
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )
})
