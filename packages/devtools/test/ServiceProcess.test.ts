import { assert, describe, it } from "@effect/vitest"
import { ServiceProcess } from "@kpipe/devtools"
import * as Effect from "effect/Effect"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("fixtures/process.ts", import.meta.url))

const ticks = (handle: ServiceProcess.Handle) => handle.lines().filter((line) => line.startsWith("tick")).length

describe("ServiceProcess", () => {
  it.live("freePort never hands out a port twice, one call after the other or at once", () =>
    Effect.gen(function*() {
      // The system gives a closed port out again at once: among a few hundred calls some repeat.
      const ports = yield* Effect.all(Array.from({ length: 1_500 }, () => ServiceProcess.freePort), { concurrency: 4 })
      assert.strictEqual(new Set(ports).size, ports.length)
    }))

  it.live(
    "freePortBlock: consecutive free ports below the range of outgoing connections' ports, never handed out twice",
    () =>
      Effect.gen(function*() {
        const [ephemeralStart] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)
        const blocks = yield* Effect.all(Array.from({ length: 20 }, () => ServiceProcess.freePortBlock(111)))
        const ports = blocks.flatMap((base) => Array.from({ length: 111 }, (_, i) => base + i))
        assert.strictEqual(new Set(ports).size, ports.length, "no port in two blocks")
        assert.isBelow(Math.max(...ports), Number(ephemeralStart))
        // Each one can be listened on.
        for (const port of ports.slice(0, 111)) {
          yield* Effect.async<void>((resume) => {
            const server = createServer().listen(port, "127.0.0.1", () => server.close(() => resume(Effect.void)))
          })
        }
      })
  )

  it.live("starts with the given environment, is ready on its line, and exits 0 on SIGTERM", () =>
    Effect.gen(function*() {
      const proc = yield* ServiceProcess.start({
        name: "fixture",
        entry,
        args: ["ready"],
        env: { FIXTURE_VALUE: "42" }
      })
      assert.include(proc.output(), "started with FIXTURE_VALUE=42\nfixture ready\n")
      assert.strictEqual(yield* proc.stop, 0)
      assert.deepStrictEqual(yield* proc.exitStatus, { code: 0, signal: null })
      assert.include(proc.output(), "stopping")
    }).pipe(Effect.scoped))

  it.live("SIGSTOP freezes it and SIGCONT thaws it; SIGKILL ends it with that signal", () =>
    Effect.gen(function*() {
      const proc = yield* ServiceProcess.start({ name: "fixture", entry, ready: /fixture ready/ })
      yield* Effect.sleep("100 millis")
      yield* proc.signal("SIGSTOP")
      yield* Effect.sleep("100 millis")
      const frozen = ticks(proc)
      yield* Effect.sleep("300 millis")
      assert.strictEqual(ticks(proc), frozen)
      yield* proc.signal("SIGCONT")
      yield* Effect.sleep("300 millis")
      assert.isAbove(ticks(proc), frozen)
      yield* proc.kill
      assert.deepStrictEqual(yield* proc.exitStatus, { code: null, signal: "SIGKILL" })
    }).pipe(Effect.scoped))

  it.live("stop from a finalizer kills a process deaf to SIGTERM after stopTimeout", () =>
    Effect.gen(function*() {
      const proc = yield* ServiceProcess.start({
        name: "fixture",
        entry,
        ready: /fixture ready/,
        stopTimeout: "1 second"
      })
      yield* proc.signal("SIGSTOP")
      const started = Date.now()
      // Finalizers run uninterruptibly, where a bare timeout would wait for the exit that never comes.
      yield* Effect.scoped(Effect.addFinalizer(() => Effect.asVoid(proc.stop)))
      assert.isBelow(Date.now() - started, 10_000)
      assert.deepStrictEqual(yield* proc.exitStatus, { code: null, signal: "SIGKILL" })
    }).pipe(Effect.scoped))

  it.live("fails with its output when it exits before it is ready", () =>
    Effect.gen(function*() {
      const error = yield* ServiceProcess.start({ name: "fixture", entry, args: ["crash"] }).pipe(Effect.flip)
      assert.strictEqual(error.reason, "Exited")
      assert.include(error.message, "exited (3)")
      assert.include(error.message, "cannot start")
    }).pipe(Effect.scoped))

  it.live("waits on a condition polled until it holds, or fails after readyTimeout", () =>
    Effect.gen(function*() {
      let polls = 0
      const proc = yield* ServiceProcess.start({
        name: "fixture",
        entry,
        ready: Effect.sync(() => ++polls >= 3)
      })
      assert.strictEqual(polls, 3)
      const error = yield* ServiceProcess.start({
        name: "fixture",
        entry,
        ready: "a line it never prints",
        readyTimeout: "500 millis"
      }).pipe(Effect.flip)
      assert.strictEqual(error.reason, "NotReady")
      assert.include(error.message, "fixture ready")
      assert.strictEqual(yield* proc.stop, 0)
    }).pipe(Effect.scoped))

  it.live("a process that ignores SIGTERM is killed after stopTimeout; the scope kills what still runs", () =>
    Effect.gen(function*() {
      const stubborn = yield* ServiceProcess.start({
        name: "fixture",
        entry,
        args: ["stubborn"],
        stopTimeout: "300 millis"
      })
      assert.isNull(yield* stubborn.stop)
      assert.deepStrictEqual(yield* stubborn.exitStatus, { code: null, signal: "SIGKILL" })

      const left = yield* Effect.scoped(ServiceProcess.start({ name: "fixture", entry }))
      assert.deepStrictEqual(yield* left.exitStatus, { code: null, signal: "SIGKILL" })
    }).pipe(Effect.scoped))
})
