import { assert, describe, it } from "@effect/vitest"
import { BenchMemory } from "@kpipe/devtools"
import { HeapCompaction, ServiceMain } from "@kpipe/service-kit"
import { ServiceProcess } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"

const fixture = fileURLToPath(new URL("fixtures/startGarbage.ts", import.meta.url))

/** Resident memory a second after `start-garbage ready`, and what it printed. */
const startedWith = (execArgv: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const service = yield* ServiceProcess.spawn({ name: "start-garbage", entry: fixture, execArgv })
    yield* service.awaitReady
    yield* Effect.sleep("1 second")
    return { rss: Math.round(BenchMemory.rss(service.pid) / 2 ** 20), output: service.output() }
  })

describe("HeapCompaction", () => {
  it.scopedLive(
    "a service started with ServiceMain's flags gives the garbage of its start back before it is ready",
    () =>
      Effect.gen(function*() {
        const compacted = yield* startedWith(ServiceMain.nodeFlags)
        const kept = yield* startedWith(ServiceMain.nodeFlags.filter((flag) => flag !== "--expose-gc"))
        // Without the collection V8 keeps the freed pages: ~150 MB more resident (what this prevents).
        assert.isAbove(kept.rss - compacted.rss, 60, `resident ${compacted.rss} MB compacted, ${kept.rss} MB not`)
        assert.match(compacted.output, /rssAfterMb/, "the ready line says what it returned")
        assert.notMatch(kept.output, /rssAfterMb/)
      }),
    { timeout: 60_000 }
  )

  it.effect("without --expose-gc it does nothing", () =>
    Effect.gen(function*() {
      if ("gc" in globalThis) return assert.fail("this test runs without --expose-gc")
      assert.isUndefined(yield* HeapCompaction.compact)
    }))
})
