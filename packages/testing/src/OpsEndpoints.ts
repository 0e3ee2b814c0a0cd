import type { UnknownException } from "effect/Cause"
import * as Effect from "effect/Effect"

/** What a service process answers on its operations endpoints, and on `otherPath`. */
export interface Answers {
  readonly ready: number
  readonly live: number
  /** The Prometheus text of `/metrics`. */
  readonly metrics: string
  readonly other: { readonly status: number; readonly tag: unknown }
}

/** Asks `baseUrl`'s /health/ready, /health/live and /metrics, then `otherPath`. */
export const probe = (baseUrl: string, otherPath: string): Effect.Effect<Answers, UnknownException> =>
  Effect.tryPromise(async () => {
    const [ready, live, metrics, other] = await Promise.all(
      ["/health/ready", "/health/live", "/metrics", otherPath].map((path) => fetch(`${baseUrl}${path}`))
    )
    return {
      ready: ready!.status,
      live: live!.status,
      metrics: await metrics!.text(),
      other: { status: other!.status, tag: ((await other!.json()) as { _tag?: unknown })._tag }
    }
  })

/** Serves readiness (200), liveness (200) and the scrape with consumer lag, and a typed 404 for `otherPath`. */
export const servesOperationsOnly = (answers: Answers) =>
  answers.ready === 200 && answers.live === 200 && answers.metrics.includes("kpipe_consumer_lag{") &&
  answers.other.status === 404 && answers.other.tag === "RouteNotFound"
