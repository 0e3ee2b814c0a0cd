import { assert, describe, it } from "@effect/vitest"
import { BenchMemory } from "@kpipe/devtools"
import { HeapCompaction, ServiceMain } from "@kpipe/service-kit"
import { ServiceProcess } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { fileURLToPath } from "node:url"

const fixture = fileURLToPath(new URL("fixtures/startGarbage.ts", import.meta.url))
const idleFixture = fileURLToPath(new URL("fixtures/idleGarbage.ts", import.meta.url))

const residentMb = (pid: number) => Math.round(BenchMemory.rss(pid) / 2 ** 20)

/** Resident memory a second after `start-garbage ready`, and what it printed. */
const startedWith = (execArgv: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const service = yield* ServiceProcess.spawn({ name: "start-garbage", entry: fixture, execArgv })
    yield* service.awaitReady
    yield* Effect.sleep("1 second")
    return { rss: residentMb(service.pid), output: service.output() }
  })

const waitFor = (condition: () => boolean) =>
  Effect.sync(condition).pipe(
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (done) => done }),
    Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("the burst never ended") })
  )

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

  it.scopedLive(
    "a service idle after a burst gives the burst's memory back without a restart",
    () =>
      Effect.gen(function*() {
        /** Resident memory 4 s after the burst, sampled every 250 ms, idle after 2 quiet samples. */
        const afterBurst = (env: Record<string, string>) =>
          Effect.gen(function*() {
            const service = yield* ServiceProcess.spawn({
              name: "idle-garbage",
              entry: idleFixture,
              execArgv: ServiceMain.nodeFlags,
              env: { HEAP_IDLE_SAMPLE_INTERVAL: "250 millis", HEAP_IDLE_SAMPLES: "2", ...env }
            })
            yield* service.awaitReady
            yield* waitFor(() => service.output().includes("burst over"))
            yield* Effect.sleep("4 seconds")
            return { rss: residentMb(service.pid), output: service.output() }
          })
        const reduced = yield* afterBurst({})
        const kept = yield* afterBurst({ HEAP_IDLE_MIN_GROWTH_MB: "100000" })
        assert.isAbove(kept.rss - reduced.rss, 60, `resident ${reduced.rss} MB compacted, ${kept.rss} MB not`)
        assert.match(reduced.output, /Heap compacted while idle/, "the compaction is logged with its figures")
        assert.notMatch(kept.output, /Heap compacted while idle/)
      }),
    { timeout: 60_000 }
  )

  it.effect("a bad setting is a configuration error", () =>
    Effect.gen(function*() {
      const error = yield* HeapCompaction.idleConfig.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["HEAP_IDLE_MAX_UTILIZATION", "2"]]))),
        Effect.flip
      )
      assert.include(String(error), "HEAP_IDLE_MAX_UTILIZATION must be between 0 and 1")
    }))

  it.effect("without --expose-gc it does nothing", () =>
    Effect.gen(function*() {
      if ("gc" in globalThis) return assert.fail("this test runs without --expose-gc")
      assert.isUndefined(yield* HeapCompaction.compact)
      // It returns at once instead of sampling forever.
      yield* HeapCompaction.whenIdle()
    }))
})
