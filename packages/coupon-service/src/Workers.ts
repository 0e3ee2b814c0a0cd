import { Consumer } from "@kpipe/kafka"
import { DeadLetter, DeadLetterMonitor, IdempotentConsumer } from "@kpipe/pipeline"
import { LabelledCounter } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"
import { type Applied, CouponStore } from "./CouponStore.ts"
import * as ReservationReclaimer from "./ReservationReclaimer.ts"
import * as ReservationRelease from "./ReservationRelease.ts"
import { StockReservations } from "./StockReservations.ts"

const outcomes = LabelledCounter.make(
  "coupon_issue_outcomes_total",
  "Issue requests applied by the consumer, by outcome",
  "outcome"
)

/** The Redis side of the outcomes, once the database has them; if Redis fails here, the database stays the truth. */
const reflect = (reservations: StockReservations, applied: ReadonlyArray<Applied>) =>
  reservations.settleAll(applied.map(({ event, outcome }) => ({
    couponId: event.couponId,
    userId: event.userId,
    eventId: event.eventId,
    issued: outcome === "ISSUED" || outcome === "ALREADY_ISSUED"
  }))).pipe(
    Effect.timeout("5 seconds"),
    Effect.retry({ times: 2 }),
    Effect.catchAll((error) =>
      Effect.logWarning("Redis status update after commit failed; the status query falls back to the database", error)
    ),
    Effect.zipRight(
      Effect.forEach(applied, ({ outcome }) => outcomes.increment(outcome), { discard: true })
    )
  )

/**
 * `coupon-issue-group`: applies each request once (IdempotentConsumer in batch mode: the new events
 * of up to `CONSUMER_BATCH_SIZE` records go through one statement, in one transaction with their
 * claims). The coupon rows' guarded increments and the `user_coupons` rows (UNIQUE per coupon and
 * user) commit together, so the database never oversells and never issues twice, whatever Redis
 * says. A batch that fails is applied again one event at a time, to single out the culprit. After
 * COMMIT, one Redis round trip shows the users ISSUED, or FAILED (SOLD_OUT: the database had no stock
 * left) with their reservations back on sale. SQL errors are retried per the policy and then
 * dead-lettered; an event for a coupon that does not exist is dead-lettered at once (its reservation
 * released first).
 */
export const issueConsumerOptions = Effect.map(Config, (config) =>
  IdempotentConsumer.options({
    topic: config.topics.requests,
    groupId: config.topics.issueGroup,
    handleBatch: (delivered) =>
      Effect.gen(function*() {
        const store = yield* CouponStore
        const reservations = yield* StockReservations
        const events = delivered.map(({ event }) => event)
        return yield* store.applyIssues(events).pipe(
          Effect.tapErrorTag("CouponMissing", () =>
            events.length === 1
              ? reservations.release(events[0]!.couponId, events[0]!.userId, events[0]!.eventId).pipe(
                Effect.catchAll((error) =>
                  Effect.logWarning("Releasing the reservation of a request for a missing coupon failed", error)
                )
              )
              : Effect.void)
        )
      }),
    afterCommit: (_, applied) => Effect.flatMap(StockReservations, (reservations) => reflect(reservations, applied)),
    errors: { SqlError: "retry", IssueConflict: "retry", CouponMissing: "deadLetter" },
    retry: config.retry,
    batchSize: config.consumerBatchSize,
    kafka: { ...config.consumer, partitionsConsumedConcurrently: config.consumerConcurrency }
  }))

/** `issueConsumerOptions` running, with its dead-letter sink. */
export const issueConsumer = Layer.unwrapEffect(Effect.map(issueConsumerOptions, IdempotentConsumer.layer)).pipe(
  Layer.provide(DeadLetter.layer)
)

/**
 * The dead-letter side of `coupon-issue-dlq`: `coupon-issue-dlq-monitor-group` runs the core's
 * `DeadLetterMonitor` (failed-events row, alert through the `AlertSink`, metrics), and
 * `coupon-issue-dlq-release-group` releases each request's reservation (`ReservationRelease`). Two
 * groups, because each reads the whole topic for its own purpose.
 */
export const deadLetters = Layer.unwrapEffect(Effect.gen(function*() {
  const config = yield* Config
  const kafka = { ...config.consumer }
  return Layer.mergeAll(
    DeadLetterMonitor.layer({ topic: config.topics.requests, groupId: config.topics.dlqMonitorGroup, kafka }),
    Consumer.layer(
      { ...kafka, groupId: config.topics.dlqReleaseGroup, topics: [config.topics.requests.deadLetter.name] },
      (record) => ReservationRelease.release(record)
    )
  )
}))

/**
 * The consumers (`coupon-issue-group`, and the two groups on `coupon-issue-dlq`) and the reclaimer
 * of reservations whose request never reached Kafka.
 */
export const layer = Layer.mergeAll(issueConsumer, deadLetters, ReservationReclaimer.layer)
