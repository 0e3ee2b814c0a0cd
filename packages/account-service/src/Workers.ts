import { SeedTopics } from "@kpipe/contracts"
import type { Consumer } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, type RetryPolicy } from "@kpipe/pipeline"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"
import { LoginStats } from "./LoginStats.ts"

export type LoginTopic = typeof SeedTopics.loginEvents

export interface ConsumerOptions {
  readonly topic: LoginTopic
  readonly groupId: string
  /** Tags the `Login event processed` lines. */
  readonly replica: number
  readonly batchSize?: number | undefined
  readonly retry?: RetryPolicy.RetryPolicy | undefined
  readonly kafka?: Omit<Consumer.ConsumerOptions, "groupId" | "topics"> | undefined
}

/**
 * Applies each login event once per group: the statistics row and the event's claim commit
 * together. `Login event processed: …` is logged after that commit, once per applied event; an
 * attempt that rolls back (a failed neighbour in the batch, a revoked partition) logs nothing.
 */
export const loginConsumerOptions = (options: ConsumerOptions) =>
  IdempotentConsumer.options({
    topic: options.topic,
    groupId: options.groupId,
    handle: (event) => Effect.flatMap(LoginStats, (stats) => stats.record(event)),
    afterCommit: (events) =>
      Effect.forEach(
        events,
        (event) =>
          Effect.logInfo(`Login event processed: accountId=${event.accountId} sessionId=${event.sessionId}`).pipe(
            Effect.annotateLogs({ replica: options.replica, eventId: event.eventId })
          ),
        { discard: true }
      ),
    errors: { SqlError: "retry" },
    retry: options.retry,
    batchSize: options.batchSize,
    kafka: options.kafka
  })

/** `loginConsumerOptions` running, with its dead-letter sink. */
export const loginConsumer = (options: ConsumerOptions) =>
  IdempotentConsumer.layer(loginConsumerOptions(options)).pipe(Layer.provide(DeadLetter.layer))

/** The login-events consumer (group `account-service`, under `TOPIC_PREFIX`), as `Config` says. */
export const layer = Layer.unwrapEffect(Effect.gen(function*() {
  const config = yield* Config
  const topic: LoginTopic = yield* ServiceTopics.resolve(SeedTopics.loginEvents)
  return loginConsumer({
    topic,
    groupId: yield* ServiceTopics.group("account-service"),
    replica: config.replica,
    batchSize: config.batchSize,
    kafka: config.consumer
  })
}))
