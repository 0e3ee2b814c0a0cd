import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import { App, Config, Workers } from "@kpipe/dday-service"
import { DeadLetter, Publisher, RetryPolicy } from "@kpipe/pipeline"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { createServer, type Server } from "node:http"
import {
  deleted,
  eventually,
  fastRetry,
  isolated,
  processed,
  readTopic,
  reference,
  TestLive,
  updated,
  withConfig
} from "./utils.ts"

const t0 = Date.UTC(2030, 0, 1)

/** How the stand-in answers one request: a status and body, or no answer at all. */
type Reply = { readonly status: number; readonly body: string; readonly type?: string } | "hang"

interface Asked {
  readonly memberId: number
  readonly at: number
}

/**
 * A local HTTP server standing in for auth-service's failures: `reply` decides each answer from the
 * member asked for and how many times it was asked for (this request included). Records every request.
 */
const standIn = (reply: (memberId: number, times: number) => Reply): Effect.Effect<
  { readonly url: string; readonly asked: Array<Asked> },
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const asked: Array<Asked> = []
    const server = yield* Effect.acquireRelease(
      Effect.async<Server>((resume) => {
        const server = createServer((request, response) => {
          const memberId = Number(/\/api\/members\/(\d+)$/.exec(request.url ?? "")?.[1] ?? -1)
          asked.push({ memberId, at: Date.now() })
          const answer = reply(memberId, asked.filter((request) => request.memberId === memberId).length)
          if (answer === "hang") return
          response.writeHead(answer.status, { "content-type": answer.type ?? "application/json" }).end(answer.body)
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    return { url: `http://127.0.0.1:${port}`, asked }
  })

/** The member-sync consumer as `Workers.layer` builds it (default retry unless `retry`), fetching from `authUrl`. */
const startSync = (options: {
  readonly topic: Workers.MemberTopic
  readonly group: string
  readonly authUrl: string
  readonly authTimeoutMs: number
  readonly retry?: RetryPolicy.RetryPolicy
}) =>
  Layer.build(
    Workers.memberEventsConsumer({
      topic: options.topic,
      groupId: options.group,
      retry: options.retry,
      kafka: TestKafka.fastConsumer
    }).pipe(
      Layer.provide(App.services),
      Layer.provide(Layer.merge(NodeHttpClient.layerUndici, Config.layerFromEnv))
    )
  ).pipe(withConfig({ AUTH_SERVICE_URL: options.authUrl, AUTH_TIMEOUT_MS: String(options.authTimeoutMs) }))

/** Dead letters of `topic`, by member. */
const letters = (topic: Workers.MemberTopic, count: number) =>
  Effect.gen(function*() {
    const records = yield* readTopic(topic.deadLetter.name, count)
    const byMember = new Map<number, DeadLetter.DeadLetterHeaders>()
    for (const record of records) {
      const { letter } = yield* DeadLetter.decode(record)
      byMember.set(Number(record.key!.toString("utf8")), letter)
    }
    return byMember
  })

const serviceUnavailable = JSON.stringify({ _tag: "ServiceUnavailable", message: "database down" })

/** auth-service's answer for an ACTIVE member last changed at `updatedAt`. */
const memberJson = (memberId: number, updatedAt: number) =>
  JSON.stringify({
    memberId,
    provider: "google",
    subject: `subject-${memberId}`,
    nickname: "before",
    status: "ACTIVE",
    createdAt: new Date(updatedAt).toISOString(),
    updatedAt: new Date(updatedAt).toISOString()
  })

describe("MemberSync when auth-service fails", () => {
  it.live(
    "an answer that breaks the contract is AuthRejected, dead-lettered at once; a 500 is retried, then dead-lettered; 429, 502, 503 and timeouts wait for auth-service, however long, and apply once it answers",
    () =>
      Effect.gen(function*() {
        const { group, topic } = yield* isolated("authfail")
        // More requests than the policy's attempts would make (three per attempt, the client's quick retries).
        const awayFor = 3 * (fastRetry.maxRetries + 1) + 1
        const failures: Record<number, Reply> = {
          601: { status: 200, body: JSON.stringify({ unexpected: true }) },
          602: { status: 418, body: "I'm a teapot", type: "text/plain" },
          611: { status: 429, body: "slow down", type: "text/plain" },
          612: { status: 500, body: "boom", type: "text/plain" },
          613: { status: 502, body: "<html>bad gateway</html>", type: "text/html" },
          614: { status: 503, body: serviceUnavailable },
          615: "hang"
        }
        const away = [611, 613, 614, 615]
        const auth = yield* standIn((memberId, times) =>
          away.includes(memberId) && times > awayFor
            ? { status: 200, body: memberJson(memberId, t0 - 1_000) }
            : failures[memberId] ?? { status: 404, body: "{}" }
        )
        yield* startSync({ topic, group, authUrl: auth.url, authTimeoutMs: 300, retry: fastRetry })
        const members = Object.keys(failures).map(Number)
        const events = members.map((id) => updated(id, t0, "ghost"))
        const eventIdOf = (id: number) => events[members.indexOf(id)]!.eventId
        yield* Publisher.publish(topic, ...events)

        // An event waiting for auth-service holds the ones behind it on its partition: the dead letters
        // of the others may come only after it, so wait for every outcome first.
        yield* eventually(
          Effect.map(processed(group), (claims) => claims.length === members.length),
          "90 seconds",
          "every event applied or dead-lettered"
        )
        const byMember = yield* letters(topic, 3)
        const outcome = Object.fromEntries(
          [...byMember].map(([id, letter]) => [id, `${letter.errorTag} ${letter.attempts}`])
        )
        assert.deepStrictEqual(outcome, {
          601: "AuthRejected 1",
          602: "AuthRejected 1",
          612: `AuthServerError ${fastRetry.maxRetries + 1}`
        })
        const claims = yield* processed(group)
        const outcomeOf = (id: number) => claims.find((claim) => claim.eventId === eventIdOf(id))?.outcome
        assert.deepStrictEqual(
          Object.fromEntries(members.map((id) => [id, outcomeOf(id)])),
          {
            601: "DEAD_LETTERED",
            602: "DEAD_LETTERED",
            611: "APPLIED",
            612: "DEAD_LETTERED",
            613: "APPLIED",
            614: "APPLIED",
            615: "APPLIED"
          }
        )
        for (const id of away) assert.deepInclude(yield* reference(id), { nickname: "ghost", status: "ACTIVE" })
        // The client's own two quick retries on each attempt of a transient failure; none on a rejection.
        const askedFor = (id: number) => auth.asked.filter((request) => request.memberId === id).length
        assert.deepStrictEqual([askedFor(601), askedFor(602), askedFor(612)], [1, 1, 3 * (fastRetry.maxRetries + 1)])
        for (const id of away) assert.strictEqual(askedFor(id), awayFor + 1, `member ${id}`)
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 180_000 }
  )

  it.live(
    "auth-service failing with 500 is retried after 1 s, 2 s and 4 s (the service's default policy), then dead-lettered",
    () =>
      Effect.gen(function*() {
        const { group, topic } = yield* isolated("authsched")
        const auth = yield* standIn(() => ({ status: 500, body: "boom", type: "text/plain" }))
        yield* startSync({ topic, group, authUrl: auth.url, authTimeoutMs: 1_000 })
        yield* Publisher.publish(topic, deleted(620, t0))

        const letter = (yield* letters(topic, 1)).get(620)
        assert.strictEqual(letter?.errorTag, "AuthServerError")
        assert.strictEqual(letter?.attempts, RetryPolicy.defaultPolicy.maxRetries + 1)
        yield* eventually(
          Effect.map(processed(group), (claims) => claims.length === 1),
          "10 seconds",
          "the dead-lettered claim"
        )
        // Three requests per attempt (the client's quick retries); between attempts the consumer's delays.
        const times = auth.asked.map((request) => request.at)
        assert.strictEqual(times.length, 3 * (RetryPolicy.defaultPolicy.maxRetries + 1))
        const gaps = [1, 2, 3].map((attempt) => times[3 * attempt]! - times[3 * attempt - 1]!)
        ;[1_000, 2_000, 4_000].forEach((delay, i) => {
          assert.isAtLeast(gaps[i]!, delay * 0.9 - 50, `gap before attempt ${i + 2}: ${gaps.join(", ")}`)
          assert.isAtMost(gaps[i]!, delay * 1.1 + 1_000, `gap before attempt ${i + 2}: ${gaps.join(", ")}`)
        })
        // Quick retries within an attempt are much shorter than the consumer's delays.
        for (let attempt = 0; attempt < 4; attempt++) {
          assert.isBelow(times[3 * attempt + 2]! - times[3 * attempt]!, 900)
        }
      }).pipe(Effect.scoped, Effect.provide(TestLive)),
    { timeout: 90_000 }
  )
})
