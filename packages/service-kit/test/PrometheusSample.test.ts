import { assert, describe, it } from "@effect/vitest"
import { Health, Prometheus } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import { TestLogging } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

describe("Prometheus scrape", () => {
  // A database without the outbox's table: the backlog sample fails on every scrape, as it does when
  // the database is down. The scrape still answers; the failure must be seen, not logged at Debug.
  it.live("a failed metrics sample is logged at Warning and the scrape still answers", () =>
    Effect.gen(function*() {
      const { layer: recorded, logged } = TestLogging.recording(LogLevel.Debug)
      const health = yield* Health.make("sampled-service")
      const services = yield* Layer.build(
        Prometheus.layer("sampled-service").pipe(
          Layer.provide(Layer.succeed(Health.Health, { ...health.health, hasRelay: () => true })),
          Layer.provide(Layer.merge(Database.layerTest(), recorded))
        )
      )
      const prometheus = Context.get(services, Prometheus.Prometheus)
      const server = createServer((request, response) => prometheus.handle(request, response))
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const { port } = server.address() as AddressInfo
      const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`))
      assert.strictEqual(response.status, 200)
      assert.include(yield* Effect.promise(() => response.text()), "process_resident_memory_bytes")
      const samples = logged.filter(({ message }) => message.startsWith("A metrics sample"))
      assert.deepStrictEqual(samples.map(({ level }) => level), ["WARN"], JSON.stringify(logged))
    }).pipe(Effect.scoped), 30_000)
})
