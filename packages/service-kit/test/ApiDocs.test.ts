import { assert, describe, it } from "@effect/vitest"
import { ServiceProcess } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const fixture = fileURLToPath(new URL("fixtures/apiDocs.ts", import.meta.url))

describe("ApiDocs", () => {
  it.scopedLive(
    "serves Swagger's own page, its module loaded on the first request and not at start",
    () =>
      Effect.gen(function*() {
        const child = yield* ServiceProcess.spawn({ name: "api-docs", entry: fixture, ready: /^result / })
        yield* child.awaitReady
        const line = child.lines().find((text) => text.startsWith("result "))!
        const result = JSON.parse(line.slice("result ".length))
        assert.deepStrictEqual(result, {
          atStart: false,
          afterRequest: true,
          status: 200,
          contentType: "text/html",
          bytes: result.bytes,
          sameAsSwagger: true,
          sameAgain: true,
          hasSpec: true
        })
        assert.isAbove(result.bytes, 1_000_000, "the page carries Swagger's script")
      }),
    { timeout: 60_000 }
  )
})
