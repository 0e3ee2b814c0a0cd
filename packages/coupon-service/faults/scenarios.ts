import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport } from "@kpipe/devtools"
import { Redis } from "@kpipe/redis"
import type { ServiceProcess } from "@kpipe/testing"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as App from "../src/App.ts"
import { Config } from "../src/Config.ts"
import { couponKeys } from "../src/StockReservations.ts"
import * as Topics from "../src/Topics.ts"
import { adminToken, deleteKeys, InfraLive, startProcess, testEnv } from "../test/utils.ts"

/** One row of the coupon fault matrix. */
export interface Row {
  readonly scenario: string
  /** Requests answered 202, in both waves. */
  readonly accepted: number
  /** Coupons the database issued. */
  readonly issued: number
  /** Requests that ended FAILED in the database (e.g. NOT_QUEUED: reserved by a killed process, never in Kafka). */
  readonly failed: number
  /** 202s that ended neither ISSUED nor FAILED. */
  readonly lost: number
  /** 202s beyond the stock, plus coupons issued beyond it. */
  readonly oversold: number
  /** Units of the stock not issued once a second wave of users asked after the fault settled. */
  readonly unsold: number
  /** Units Redis holds for users without a coupon, plus any difference between its counter and its set. */
  readonly stuck: number
  /** Seconds from the fault's end until every 202 was settled and Redis matched the database; undefined: never. */
  readonly recoverySeconds: number | undefined
  /** How many users were told what, e.g. `Accepted 20, CouponSoldOut 370, Unanswered 10`. */
  readonly answers: string
}

export interface Size {
  readonly quantity: number
  readonly users: number
  readonly concurrency: number
  readonly recoveryDeadline: Duration.DurationInput
}

export interface Scenario {
  readonly name: string
  /** How many API processes serve the sale. */
  readonly replicas: number
  /** Injects the fault once a third of the stock is accepted; returns when it ended. */
  readonly fault: (sale: Sale) => Effect.Effect<void, unknown, Redis.Redis | SqlClient | Config | Scope.Scope>
}

/** What a fault can do to the sale under way. */
export interface Sale {
  readonly processes: ReadonlyArray<ServiceProcess.ServiceProcess>
  /** Kills API process `i` (SIGSTOP, then SIGKILL: whatever it had not published dies with it). */
  readonly kill: (i: number) => Effect.Effect<void>
  /** Starts API process `i` again, and sends the sale's requests to it once it is ready. */
  readonly restart: (i: number) => Effect.Effect<void, unknown, SqlClient | Scope.Scope>
}

const overrides = (replica: number) => ({
  REPLICA: String(replica + 1),
  COUPON_ROLES: "api",
  // One event per producer request: publishes queue up behind the one in flight.
  PUBLISH_MAX_BATCH: "1"
})

export const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "coupon-service kill -9 mid-sale with queued publishes, then restart",
    replicas: 1,
    fault: (sale) => Effect.zipRight(sale.kill(0), sale.restart(0))
  },
  {
    name: "Redis wiped mid-sale with two API replicas",
    replicas: 2,
    fault: () => Effect.asVoid(Effect.flatMap(Config, (config) => deleteKeys(`${config.keyPrefix}*`)))
  }
]

type Answer = "Accepted" | "Unanswered" | string

const post = (origin: string, path: string, headers: Record<string, string>, body?: unknown) =>
  Effect.tryPromise(async () => {
    const response = await fetch(`${origin}${path}`, {
      method: "POST",
      headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    return { status: response.status, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> }
  })

const outcomes = (couponId: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const issued = yield* sql<{ userId: string }>`
      SELECT user_id::text AS user_id FROM user_coupons WHERE coupon_id = ${couponId}`
    const failed = yield* sql<{ userId: string }>`
      SELECT user_id::text AS user_id FROM coupon_issue_failures WHERE coupon_id = ${couponId}`
    return {
      issued: new Set(issued.map((row) => Number(row.userId))),
      failed: new Set(failed.map((row) => Number(row.userId))),
      failures: failed.length
    }
  })

const redisView = (couponId: number) =>
  Effect.gen(function*() {
    const redis = yield* Redis.Redis
    const config = yield* Config
    const keys = couponKeys(config.keyPrefix, couponId)
    return yield* redis.use(async (client) => ({
      counter: Number((await client.get(keys.counter)) ?? 0),
      members: (await client.smembers(keys.users)).map(Number)
    }))
  })

/**
 * Runs one scenario: API processes of `main.ts` (`COUPON_ROLES=api`) on a database, topics and Redis
 * keys of their own, the consumers (and reclaimer) in this process; `size.users` distinct users ask
 * for a coupon of `size.quantity`, a client retrying a 503 `CouponRecovering` every 100 ms; the fault
 * hits once a third of the stock is accepted. Then waits until every 202 is settled and Redis holds
 * exactly the issued users, or `recoveryDeadline` passed; then as many new users ask again, to buy what
 * the fault had left reserved, and it waits for that to settle too.
 */
export const runScenario = (scenario: Scenario, size: Size) =>
  Effect.gen(function*() {
    const { env, provider } = testEnv({
      RESERVATION_RECLAIM_AGE: "3 seconds",
      RESERVATION_RECLAIM_INTERVAL: "200 millis"
    })
    return yield* Effect.gen(function*() {
      const config = yield* Config
      yield* Layer.build(Topics.layer)
      yield* Effect.addFinalizer(() => Effect.ignore(deleteKeys(`${config.keyPrefix}*`)))
      yield* Layer.build(App.consumer)
      const start = (i: number) => startProcess(env, overrides(i))
      const processes: Array<ServiceProcess.ServiceProcess> = []
      const origins: Array<Ref.Ref<Deferred.Deferred<string>>> = []
      for (let i = 0; i < scenario.replicas; i++) {
        const process = yield* start(i)
        processes.push(process)
        origins.push(yield* Ref.make(yield* Deferred.make<string>()))
        yield* Deferred.succeed(yield* Ref.get(origins[i]!), process.baseUrl)
      }
      const sale: Sale = {
        processes,
        kill: (i) =>
          Effect.gen(function*() {
            yield* Ref.set(origins[i]!, yield* Deferred.make<string>())
            yield* processes[i]!.signal("SIGSTOP")
            yield* processes[i]!.kill
          }),
        restart: (i) =>
          Effect.gen(function*() {
            processes[i] = yield* start(i)
            yield* Deferred.succeed(yield* Ref.get(origins[i]!), processes[i]!.baseUrl)
          })
      }

      const now = new Date()
      const created = yield* post(processes[0]!.baseUrl, "/api/admin/coupons", {
        authorization: `Bearer ${adminToken}`
      }, {
        name: scenario.name,
        totalQuantity: size.quantity,
        validFrom: new Date(now.getTime() - 3_600_000).toISOString(),
        validUntil: new Date(now.getTime() + 86_400_000).toISOString()
      })
      const couponId = Number(created.body["couponId"])

      const answers = new Map<number, Answer>()
      let acceptedCount = 0
      const third = yield* Deferred.make<void>()
      const ask = (userId: number) =>
        Effect.gen(function*() {
          const origin = origins[userId % origins.length]!
          for (let attempt = 0; attempt < 600; attempt++) {
            const base = yield* Deferred.await(yield* Ref.get(origin))
            const answer = yield* post(base, `/api/coupons/${couponId}/issue`, { "x-user-id": String(userId) }).pipe(
              Effect.map(({ body, status }) => status === 202 ? "Accepted" : String(body["_tag"] ?? status)),
              Effect.orElseSucceed(() => "Unanswered")
            )
            if (answer !== "CouponRecovering") {
              answers.set(userId, answer)
              if (answer === "Accepted" && ++acceptedCount >= size.quantity / 3) Deferred.unsafeDone(third, Effect.void)
              return
            }
            yield* Effect.sleep("100 millis")
          }
          answers.set(userId, "CouponRecovering")
        })
      const users = Array.from({ length: size.users }, (_, i) => i + 1)
      const load = yield* Effect.forEach(users, ask, { concurrency: size.concurrency, discard: true }).pipe(
        Effect.fork
      )
      yield* Deferred.await(third)
      yield* scenario.fault(sale)
      const faultEnded = Date.now()
      yield* Fiber.join(load)

      const accepted = () => [...answers].filter(([, answer]) => answer === "Accepted").map(([userId]) => userId)
      const measure = Effect.gen(function*() {
        const acceptedUsers = accepted()
        const db = yield* outcomes(couponId)
        const redis = yield* redisView(couponId)
        const lost = acceptedUsers.filter((userId) => !db.issued.has(userId) && !db.failed.has(userId)).length
        const stuck = redis.members.filter((userId) => !db.issued.has(userId)).length +
          Math.abs(redis.counter - redis.members.length)
        return {
          accepted: acceptedUsers.length,
          issued: db.issued.size,
          failed: db.failures,
          lost,
          stuck,
          oversold: Math.max(0, acceptedUsers.length - size.quantity) + Math.max(0, db.issued.size - size.quantity)
        }
      })
      const settle = Effect.gen(function*() {
        const deadline = Date.now() + Duration.toMillis(Duration.decode(size.recoveryDeadline))
        let last = yield* measure
        while ((last.lost > 0 || last.stuck > 0) && Date.now() < deadline) {
          yield* Effect.sleep("200 millis")
          last = yield* measure
        }
        return last
      })
      const settled = yield* settle
      const converged = settled.lost === 0 && settled.stuck === 0
      const recoverySeconds = converged ? (Date.now() - faultEnded) / 1000 : undefined
      // Units a killed process had reserved are released once settled: a second wave of users buys them.
      const secondWave = users.map((userId) => userId + size.users)
      if (converged) yield* Effect.forEach(secondWave, ask, { concurrency: size.concurrency, discard: true })
      const last = converged ? yield* settle : settled
      return {
        scenario: scenario.name,
        ...last,
        unsold: size.quantity - last.issued,
        recoverySeconds,
        answers: tally(answers.values())
      } satisfies Row
    }).pipe(Effect.scoped, Effect.provide(InfraLive), Effect.withConfigProvider(provider))
  })

const tally = (answers: Iterable<Answer>) => {
  const counts = new Map<Answer, number>()
  for (const answer of answers) counts.set(answer, (counts.get(answer) ?? 0) + 1)
  return [...counts].sort(([, a], [, b]) => b - a).map(([answer, count]) => `${answer} ${count}`).join(", ")
}

export const format = (rows: ReadonlyArray<Row>) => {
  const header = ["scenario", "accepted", "issued", "failed", "lost", "oversold", "stuck", "unsold", "recovery"]
  const cells = rows.map((row) => [
    row.scenario,
    String(row.accepted),
    String(row.issued),
    String(row.failed),
    String(row.lost),
    String(row.oversold),
    String(row.stuck),
    String(row.unsold),
    row.recoverySeconds === undefined ? "never" : `${row.recoverySeconds.toFixed(1)} s`
  ])
  return BenchReport.markdownTable(header, cells)
}
