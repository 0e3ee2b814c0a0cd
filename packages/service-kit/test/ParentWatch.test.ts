import { assert, describe, it } from "@effect/vitest"
import { ParentWatch } from "@kpipe/service-kit"
import { ServiceProcess } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const fixture = fileURLToPath(new URL("fixtures/orphan.ts", import.meta.url))

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The pid the parent printed once its child was ready; the parent SIGKILLed (no finalizer of its own runs). */
const orphan = (mode: "watched" | "unwatched") =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "kpipe-orphan-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const log = join(dir, "child.log")
    const parent = yield* ServiceProcess.spawn({
      name: "parent",
      entry: fixture,
      args: ["parent", mode, log],
      ready: /child pid \d+/
    })
    yield* parent.awaitReady
    const pid = Number(/child pid (\d+)/.exec(parent.output())![1])
    yield* Effect.addFinalizer(() => Effect.sync(() => alive(pid) && process.kill(pid, "SIGKILL")))
    yield* parent.kill
    return { pid, stopped: () => readFileSync(log, { encoding: "utf8", flag: "a+" }) }
  })

describe("ParentWatch", () => {
  it.scopedLive("a service whose starter was SIGKILLed stops gracefully within seconds", () =>
    Effect.gen(function*() {
      const { pid, stopped } = yield* orphan("watched")
      yield* Effect.sync(() => alive(pid)).pipe(
        Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (running) => !running }),
        Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`pid ${pid} still runs`) })
      )
      assert.strictEqual(stopped(), "child stopped\n", "its finalizers ran")
    }), { timeout: 60_000 })

  it.scopedLive("without the watch the orphan keeps running (what the watch prevents)", () =>
    Effect.gen(function*() {
      const { pid, stopped } = yield* orphan("unwatched")
      yield* Effect.sleep("3 seconds")
      assert.isTrue(alive(pid))
      assert.strictEqual(stopped(), "")
    }), { timeout: 60_000 })

  it.effect("a value that is not a boolean is a ConfigError, not a silent off", () =>
    Effect.gen(function*() {
      const error = yield* Layer.build(ParentWatch.layer).pipe(
        Effect.scoped,
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([[ParentWatch.variable, "maybe"]]))),
        Effect.flip
      )
      assert.strictEqual(error._op, "InvalidData")
    }))
})
