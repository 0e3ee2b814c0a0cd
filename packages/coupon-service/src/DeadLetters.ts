import { Consumer } from "@kpipe/kafka"
import { DeadLetter, DeadLetterMonitor } from "@kpipe/pipeline"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { CouponConfig } from "./CouponConfig.ts"
import { CouponStore } from "./CouponStore.ts"
import { IssueGate } from "./IssueGate.ts"

/**
 * What a dead-lettered request means for the user: the failure is stored (so the status query
 * answers FAILED even without Redis) and the reservation goes back on sale, unless that happened
 * already. Idempotent: a redelivered record changes nothing.
 */
const settle = (record: Consumer.ConsumerRecord) =>
  Effect.gen(function*() {
    const config = yield* CouponConfig
    const store = yield* CouponStore
    const gate = yield* IssueGate
    const { letter, value } = yield* DeadLetter.decode(record)
    if (value === null) return yield* Effect.logError("Dead-lettered request without a value; nothing to release")
    const event = yield* config.topic.decode(value.toString("utf8"))
    yield* store.recordFailure(event, "DEAD_LETTERED", `${letter.errorTag}: ${letter.errorMessage}`)
    const released = yield* gate.release(event.couponId, event.userId, event.eventId)
    yield* Effect.logWarning("Dead-lettered issue request settled as FAILED").pipe(
      Effect.annotateLogs({ couponId: event.couponId, userId: event.userId, eventId: event.eventId, released })
    )
  }).pipe(
    // An unreadable record cannot be released; the monitor alerts on it.
    Effect.catchTag("ParseError", (error) => Effect.logError("Unreadable dead-lettered record", error)),
    Effect.retry(
      Schedule.exponential("200 millis").pipe(
        Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(30)))
      )
    ),
    Effect.orDie,
    Effect.withSpan("DeadLetters.settle", { attributes: { offset: record.offset } })
  )

/**
 * The dead-letter side of `coupon-issue-dlq`: `coupon-issue-dlq-monitor-group` runs the core's
 * `DeadLetterMonitor` (failed-events row, alert through the `AlertSink`, metrics), and
 * `coupon-issue-dlq-release-group` settles each request (FAILED, reservation released). Two groups,
 * because each reads the whole topic for its own purpose.
 */
export const layer = Layer.unwrapEffect(Effect.gen(function*() {
  const config = yield* CouponConfig
  const kafka = { ...config.kafka }
  return Layer.mergeAll(
    DeadLetterMonitor.layer({ topic: config.topic, groupId: config.dlqMonitorGroup, kafka }),
    Consumer.layer({ ...kafka, groupId: config.dlqReleaseGroup, topics: [config.topic.deadLetter.name] }, settle)
  )
}))
