import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { assert, describe, it } from "@effect/vitest"
import { HttpServe } from "@kpipe/service-kit"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { Agent, get } from "node:http"

interface Answer {
  readonly status: number
  readonly connection: string | undefined
}

describe("HttpServe.server stopping", () => {
  it.live(
    "closes a connection its client keeps reusing (a scrape every 50 ms): the request in progress is answered, any later one with Connection: close",
    () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const started = yield* Deferred.make<void>()
        let requests = 0
        const app = Effect.suspend(() => {
          // The third request is in progress when the server is told to stop.
          if (++requests === 3) Deferred.unsafeDone(started, Effect.void)
          return Effect.as(Effect.sleep("300 millis"), HttpServerResponse.text("ok"))
        })
        const context = yield* Layer.buildWithScope(HttpServe.server({ port: 0 }), scope)
        const server = Layer.succeedContext(context)
        const port = yield* Effect.gen(function*() {
          yield* HttpServer.serveEffect(app)
          const address = (yield* HttpServer.HttpServer).address
          return address._tag === "TcpAddress" ? address.port : 0
        }).pipe(Effect.provide(server), Scope.extend(scope))

        // A client such as Prometheus: one keep-alive connection, a request soon after each answer.
        const agent = new Agent({ keepAlive: true, maxSockets: 1 })
        const answers: Array<Answer> = []
        let stopped = false
        const ask = (): void => {
          get({ host: "127.0.0.1", port, agent, path: "/metrics" }, (response) => {
            response.resume()
            response.on("end", () => {
              answers.push({ status: response.statusCode ?? 0, connection: response.headers.connection })
              if (!stopped) setTimeout(ask, 50)
            })
          }).on("error", () => {
            stopped = true
          })
        }
        ask()
        yield* Deferred.await(started)
        const closing = Date.now()
        // Forked: a close that hangs is uninterruptible, the wait for it is not.
        const close = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* Fiber.join(close).pipe(
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the server did not close in 5 s") }),
          Effect.ensuring(Effect.sync(() => {
            stopped = true
            agent.destroy()
          }))
        )
        assert.isBelow(Date.now() - closing, 2_000)
        assert.deepStrictEqual(
          answers.slice(0, 3).map((answer) => answer.status),
          [200, 200, 200],
          "the one in progress answered"
        )
        for (const answer of answers.slice(3)) assert.deepStrictEqual(answer, { status: 200, connection: "close" })
      })
  )
})
