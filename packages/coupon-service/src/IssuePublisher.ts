import { Publisher } from "@kpipe/pipeline"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { Config } from "./Config.ts"

/**
 * Publishes issue requests to Kafka, many per producer request (`Publisher.makeBatched`): callers
 * wait for the outcome of the request that carried theirs; a sender takes whatever is queued (up to
 * `PUBLISH_MAX_BATCH`) and a lone request is sent at once. `PUBLISH_LANES` senders (default 1), each
 * with its own idempotent producer, can run side by side, so what queues behind one send need not
 * wait for it; every request has its coupon as key, so the lanes take any request (`laneBy: "any"`)
 * and may reorder requests accepted within the same few milliseconds, which issuing does not depend
 * on (the stock reservations decided who got a unit), but the default keeps acceptance order: more lanes
 * measured no faster here. kafkajs retries a request `PUBLISH_RETRIES` times, so a failure is answered.
 * A request waits in the queue half of `RESERVATION_RECLAIM_AGE` at most, and fails unsent after
 * that (its reservation rolled back, the user answered 503): the other half is its own send's, so
 * no request can still be published once the reclaimer may take its reservation for one that never
 * reached Kafka (it would be answered 202 and never issued).
 */
export class IssuePublisher extends Effect.Service<IssuePublisher>()("@kpipe/coupon-service/IssuePublisher", {
  scoped: Effect.gen(function*() {
    const config = yield* Config
    /** `publish` resolves once Kafka acknowledged the event (acks=all), or fails: then it was not accepted. */
    return yield* Publisher.makeBatched(config.topics.requests, {
      maxBatch: config.publishMaxBatch,
      lanes: config.publishLanes,
      laneBy: "any",
      // acks=all and idempotent (the seed's settings); bounded retries, so a failure is answered.
      producer: { idempotent: true, retries: config.publishRetries },
      spanAttributes: (event) => ({ couponId: event.couponId }),
      maxQueueTime: Duration.times(config.reclaimAge, 0.5)
    })
  })
}) {}
