import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createServer } from "node:http"

export interface ReceivedSms {
  readonly to: string
  readonly text: string
  readonly idempotencyKey: string
}

export interface SmsCatcher {
  readonly url: string
  readonly received: () => ReadonlyArray<ReceivedSms>
  /** Answers the next `count` messages to `to` with `status` (default 503, a provider outage), for tests. */
  readonly failNext: (count: number, to: string, status?: number) => void
  /** Keeps the next message to `to` at once but answers it only after `ms`: a slow provider, for tests. */
  readonly answerLater: (to: string, ms: number) => void
}

/**
 * A local SMS provider stand-in: `POST /sms` with `Authorization: Bearer <token>` and
 * `{ to, text }` is kept and answered 202; a wrong token 401.
 */
export const make = (
  options: {
    readonly port?: number | undefined
    readonly token: string
    readonly onSms?: ((sms: ReceivedSms) => void) | undefined
  }
): Effect.Effect<SmsCatcher, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const received: Array<ReceivedSms> = []
    const failures = new Map<string, { readonly count: number; readonly status: number }>()
    const slow = new Map<string, number>()
    const server = createServer((request, response) => {
      let body = ""
      request.on("data", (chunk) => body += chunk)
      request.on("end", () => {
        if (request.method !== "POST" || request.url !== "/sms") return response.writeHead(404).end()
        if (request.headers.authorization !== `Bearer ${options.token}`) return response.writeHead(401).end()
        const { text, to } = JSON.parse(body) as { to: string; text: string }
        const failing = failures.get(to)
        if (failing !== undefined && failing.count > 0) {
          failures.set(to, { ...failing, count: failing.count - 1 })
          return response.writeHead(failing.status).end()
        }
        const sms = { to, text, idempotencyKey: String(request.headers["idempotency-key"] ?? "") }
        received.push(sms)
        options.onSms?.(sms)
        const delay = slow.get(to)
        slow.delete(to)
        if (delay === undefined) return response.writeHead(202).end()
        setTimeout(() => response.writeHead(202).end(), delay)
      })
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number, Error>((resume) => {
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen(options.port ?? 0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    return {
      url: `http://127.0.0.1:${port}/sms`,
      received: () => [...received],
      failNext: (count, to, status = 503) => void failures.set(to, { count, status }),
      answerLater: (to, ms) => void slow.set(to, ms)
    }
  })
