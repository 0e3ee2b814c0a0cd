import { SeedTopics } from "@kpipe/contracts"
import type { Consumer } from "@kpipe/kafka"
import { DeadLetter, DeadLetterMonitor, IdempotentConsumer, type RetryPolicy } from "@kpipe/pipeline"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"
import { MemberSync } from "./MemberSync.ts"

export type MemberTopic = typeof SeedTopics.memberEvents

export interface ConsumerOptions {
  readonly topic: MemberTopic
  readonly groupId: string
  /** Consumer retries (default: the seed's 1 s, 2 s, 4 s, then the dead-letter topic). */
  readonly retry?: RetryPolicy.RetryPolicy | undefined
  readonly batchSize?: number | undefined
  readonly kafka?: Omit<Consumer.ConsumerOptions, "groupId" | "topics"> | undefined
}

/**
 * The member-events consumer: each event is applied and claimed in one transaction, in batches.
 * A member auth-service does not know, or an answer that breaks its contract, is dead-lettered at
 * once; database errors and an unreachable auth-service are retried, then dead-lettered.
 */
export const memberEventsConsumerOptions = (options: ConsumerOptions) =>
  IdempotentConsumer.options({
    topic: options.topic,
    groupId: options.groupId,
    handle: (event) => Effect.flatMap(MemberSync, (sync) => sync.apply(event)),
    errors: {
      SqlError: "retry",
      // auth-service away is not the event's fault: dead-lettering it would also lose its change for
      // good (a newer event of the member applied meanwhile makes the redriven one stale).
      AuthUnavailable: "wait",
      AuthServerError: "retry",
      MemberUnknown: "deadLetter",
      AuthRejected: "deadLetter"
    },
    retry: options.retry,
    batchSize: options.batchSize,
    kafka: options.kafka
  })

/** `memberEventsConsumerOptions` running, with its dead-letter sink. */
export const memberEventsConsumer = (options: ConsumerOptions) =>
  IdempotentConsumer.layer(memberEventsConsumerOptions(options)).pipe(Layer.provide(DeadLetter.layer))

/**
 * The consumer on `member-events` (group `d-day-service`) and the monitor of its dead-letter topic
 * (group `d-day-service-dlt`: each record logged, kept in `kpipe_failed_events`, alerted), under
 * `TOPIC_PREFIX`.
 */
export const layer = Layer.unwrapEffect(Effect.gen(function*() {
  const { consumer } = yield* Config
  const topic: MemberTopic = yield* ServiceTopics.resolve(SeedTopics.memberEvents)
  return Layer.merge(
    memberEventsConsumer({ topic, groupId: yield* ServiceTopics.group("d-day-service"), kafka: consumer }),
    DeadLetterMonitor.layer({ topic, groupId: yield* ServiceTopics.group("d-day-service-dlt"), kafka: consumer })
  )
}))
