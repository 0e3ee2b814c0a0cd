import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { createServer, type Server } from "node:http"

export interface Webhook {
  /** Where to point `ALERT_WEBHOOK_URL`. */
  readonly url: string
  /** The JSON bodies POSTed to it, in arrival order. */
  readonly received: Queue.Queue<unknown>
}

/** A local HTTP endpoint that records what is POSTed to it (a stand-in for Slack), for the life of the scope. */
export const make: Effect.Effect<Webhook, never, Scope.Scope> = Effect.gen(function*() {
  const received = yield* Queue.unbounded<unknown>()
  const server = yield* Effect.acquireRelease(
    Effect.async<Server>((resume) => {
      const server = createServer((request, response) => {
        let body = ""
        request.on("data", (chunk) => body += chunk)
        request.on("end", () => {
          Queue.unsafeOffer(received, JSON.parse(body))
          response.writeHead(204).end()
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  )
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  return { url: `http://127.0.0.1:${port}/hook`, received }
})
