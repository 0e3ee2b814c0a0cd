import { assert, describe, it } from "@effect/vitest"
import { CouponEvents, Ids } from "@kpipe/events"
import type { Consumer } from "@kpipe/kafka"
import { DeadLetter } from "@kpipe/pipeline"
import { Redis } from "@kpipe/redis"
import { FaultProxy } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Config } from "../src/Config.ts"
import { CouponStore } from "../src/CouponStore.ts"
import * as ReservationRelease from "../src/ReservationRelease.ts"
import { StockReservations } from "../src/StockReservations.ts"
import { behindRedisProxy, eventually, keysOf, StoresLive, testEnv } from "./utils.ts"

interface Line {
  readonly level: string
  readonly message: string
  readonly eventId: unknown
  readonly couponId: unknown
  readonly userId: unknown
}

/** A logger keeping every line at Info or above in `lines`, with the request it was annotated with. */
const recording = () => {
  const lines: Array<Line> = []
  const recorder = Logger.make(({ annotations, logLevel, message }) => {
    lines.push({
      level: logLevel.label,
      message: Array.isArray(message) ? message.join(" ") : String(message),
      eventId: Option.getOrUndefined(HashMap.get(annotations, "eventId")),
      couponId: Option.getOrUndefined(HashMap.get(annotations, "couponId")),
      userId: Option.getOrUndefined(HashMap.get(annotations, "userId"))
    })
  })
  return {
    lines,
    layer: Layer.merge(Logger.replace(Logger.defaultLogger, recorder), Logger.minimumLogLevel(LogLevel.Info))
  }
}

/** A dead letter of `event`, as `coupon-issue-dlq` carries it. */
const deadLetterOf = (event: CouponEvents.CouponIssueRequested) =>
  Effect.gen(function*() {
    const config = yield* Config
    const now = yield* DateTime.now
    const headers = yield* Schema.encode(DeadLetter.DeadLetterHeaders)(
      new DeadLetter.DeadLetterHeaders({
        originalTopic: config.topics.requests.name,
        originalPartition: 0,
        originalOffset: "0",
        originalTimestamp: String(DateTime.toEpochMillis(now)),
        originalKey: String(event.couponId),
        consumerGroup: config.topics.issueGroup,
        errorTag: "SqlError",
        errorMessage: "refused",
        attempts: 3,
        firstAttemptAt: now,
        lastAttemptAt: now
      })
    )
    return {
      topic: config.topics.requests.deadLetter.name,
      partition: 0,
      offset: "0",
      key: Buffer.from(String(event.couponId)),
      value: Buffer.from(yield* config.topics.requests.encode(event)),
      headers,
      timestamp: String(DateTime.toEpochMillis(now))
    } satisfies Consumer.ConsumerRecord
  })

describe("releasing a dead-lettered request", () => {
  it.live(
    "while Redis does not answer, each failure is logged at Warning with the request, at Error once it has failed for long; it ends once Redis is back",
    () =>
      behindRedisProxy(StoresLive, (proxy) =>
        Effect.gen(function*() {
          const store = yield* CouponStore
          const reservations = yield* StockReservations
          const redis = yield* Redis.Redis
          const now = yield* DateTime.now
          const coupon = yield* store.create({
            name: "Dead letters",
            totalQuantity: 5,
            validFrom: DateTime.subtract(now, { hours: 1 }),
            validUntil: DateTime.add(now, { days: 1 })
          })
          yield* reservations.initialize(coupon.couponId, coupon.totalQuantity)
          const event = new CouponEvents.CouponIssueRequested({
            eventId: Ids.EventId.make(crypto.randomUUID()),
            occurredAt: now,
            couponId: coupon.couponId,
            userId: Ids.UserId.make(3),
            timestamp: DateTime.toEpochMillis(now)
          })
          assert.strictEqual(
            (yield* reservations.reserve(coupon.couponId, event.userId, event.eventId))._tag,
            "Accepted"
          )
          const record = yield* deadLetterOf(event)

          const { layer: logging, lines } = recording()
          yield* proxy.set(FaultProxy.cut)
          const release = yield* ReservationRelease.release(record, { errorAfter: "3 seconds" }).pipe(
            Effect.provide(logging),
            Effect.fork
          )
          yield* eventually(
            Effect.sync(() => lines.some((line) => line.level === "ERROR")),
            "30 seconds",
            "a failure logged at Error"
          )
          yield* proxy.set(FaultProxy.pass)
          yield* Fiber.join(release)

          const failures = lines.slice(0, -1)
          assert.isAtLeast(failures.filter((line) => line.level === "WARN").length, 2)
          for (const line of failures) {
            assert.include(["WARN", "ERROR"], line.level)
            assert.deepStrictEqual([line.eventId, line.couponId], [event.eventId, coupon.couponId], line.message)
          }
          assert.strictEqual(lines.at(-1)!.message, "Dead-lettered issue request settled as FAILED")
          const keys = yield* keysOf(coupon.couponId)
          assert.deepStrictEqual(
            yield* redis.use(async (client) => [await client.hgetall(keys.pending), await client.get(keys.status(3))]),
            [{}, "FAILED"]
          )
        })),
    { timeout: 60_000 }
  )

  it.live(
    "a failure that is not an infrastructure fault is logged at Error with the request and skipped, not retried: the reservation is still released",
    () =>
      Effect.gen(function*() {
        const reservations = yield* StockReservations
        const redis = yield* Redis.Redis
        const now = yield* DateTime.now
        // Beyond `coupon_issue_failures.coupon_id` (INTEGER): storing the failure fails the same way
        // (22003) however often it is tried.
        const couponId = Ids.CouponId.make(3_000_000_000)
        yield* reservations.initialize(couponId, 5)
        const event = new CouponEvents.CouponIssueRequested({
          eventId: Ids.EventId.make(crypto.randomUUID()),
          occurredAt: now,
          couponId,
          userId: Ids.UserId.make(4),
          timestamp: DateTime.toEpochMillis(now)
        })
        assert.strictEqual((yield* reservations.reserve(couponId, event.userId, event.eventId))._tag, "Accepted")
        const record = yield* deadLetterOf(event)

        const { layer: logging, lines } = recording()
        yield* ReservationRelease.release(record).pipe(
          Effect.provide(logging),
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the release is still retrying") })
        )

        assert.deepStrictEqual(lines.map((line) => [line.level, line.eventId, line.couponId, line.userId]), [
          ["ERROR", event.eventId, couponId, event.userId]
        ])
        assert.include(lines[0]!.message, "Storing the failure of a dead-lettered issue request failed")
        assert.include(lines[0]!.message, "failed-events table")
        const keys = yield* keysOf(couponId)
        assert.deepStrictEqual(
          yield* redis.use(async (client) => [
            await client.get(keys.counter),
            await client.hgetall(keys.pending),
            await client.get(keys.status(4))
          ]),
          ["0", {}, "FAILED"]
        )
      }).pipe(Effect.provide(StoresLive), Effect.withConfigProvider(testEnv().provider)),
    { timeout: 60_000 }
  )
})
