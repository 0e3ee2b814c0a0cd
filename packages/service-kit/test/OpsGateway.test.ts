import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { OpsGateway } from "@kpipe/service-kit"
import { TestLogging } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http"

const token = "gateway-token"

/** A plain HTTP server on a free port, closed with the scope; counts the requests it read. */
const upstream = (answer: (request: IncomingMessage, response: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly requests: Array<string>; readonly server: Server }>((resume) => {
      const requests: Array<string> = []
      const server = createServer((request, response) => {
        request.resume()
        request.on("end", () => {
          requests.push(`${request.method} ${request.url}`)
          answer(request, response)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number }
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, requests, server }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

describe("OpsGateway (real HTTP)", () => {
  it.scopedLive(
    "forwards only ops paths as the upstream reads them, and never sends an action to a second replica after the first may have run it",
    () =>
      Effect.gen(function*() {
        // The first replica reads each request, then drops the connection without answering.
        const first = yield* upstream((request) => request.socket.destroy())
        const second = yield* upstream((_, response) => response.end(JSON.stringify({ ok: true })))
        const gateway = yield* Layer.build(OpsGateway.layer({
          port: 0,
          token: Redacted.make(token),
          services: [{ name: "svc", urls: [first.url, second.url] }]
        }))
        const port = (Context.get(gateway, HttpServer.HttpServer).address as HttpServer.TcpAddress).port
        // The path as it is: a URL (fetch, or node:http given one) resolves `%2e%2e` before sending it.
        const call = (method: string, path: string) =>
          Effect.async<number>((resume) => {
            const sent = request({
              host: "127.0.0.1",
              port,
              path,
              method,
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }
            }, (response) => {
              response.resume()
              resume(Effect.succeed(response.statusCode!))
            })
            sent.end(method === "GET" ? undefined : "{}")
          })

        // The gateway's fetch would resolve it to /docs on the upstream.
        assert.strictEqual(yield* call("GET", "/services/svc/ops/%2e%2e/docs"), 404)
        assert.strictEqual(yield* call("GET", "/services/svc/ops/%2E%2E/%2e%2e/docs"), 404)
        assert.deepStrictEqual([...first.requests, ...second.requests], [])

        // A read goes on to the next replica.
        assert.strictEqual(yield* call("GET", "/services/svc/ops/health"), 200)
        assert.deepStrictEqual(second.requests, ["GET /ops/health"])

        // The first replica read the park: it may have parked; the second must not park again.
        assert.strictEqual(yield* call("POST", "/services/svc/ops/park"), 502)
        assert.deepStrictEqual(first.requests, ["GET /ops/health", "POST /ops/park"])
        assert.deepStrictEqual(second.requests, ["GET /ops/health"])
      }).pipe(Effect.provide(TestLogging.layer)),
    30_000
  )
})
