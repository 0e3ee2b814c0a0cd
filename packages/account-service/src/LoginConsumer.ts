import { SeedTopics } from "@kpipe/contracts"
import type { Consumer } from "@kpipe/kafka"
import { DeadLetter, IdempotentConsumer, type RetryPolicy } from "@kpipe/pipeline"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { LoginStats } from "./LoginStats.ts"
import * as Replica from "./Replica.ts"

export type LoginTopic = typeof SeedTopics.loginEvents

export interface Options {
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
export const layer = (options: Options) =>
  IdempotentConsumer.layer({
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
  }).pipe(Layer.provide(DeadLetter.layer))

/**
 * Consumer timings from the environment, tuned for fast failover: a replica that dies is evicted
 * after `KAFKA_SESSION_TIMEOUT_MS` (default 10 s) and its partitions move to the others.
 */
export const kafkaConfig = Config.all({
  sessionTimeout: Config.integer("KAFKA_SESSION_TIMEOUT_MS").pipe(Config.withDefault(10_000)),
  heartbeatInterval: Config.integer("KAFKA_HEARTBEAT_INTERVAL_MS").pipe(Config.withDefault(1_000)),
  rebalanceTimeout: Config.integer("KAFKA_REBALANCE_TIMEOUT_MS").pipe(Config.withDefault(20_000)),
  maxWaitTimeInMs: Config.integer("KAFKA_MAX_WAIT_MS").pipe(Config.withDefault(500))
})

/** The S0 consumer as configured by the environment: `TOPIC_PREFIX`, `REPLICA`, `CONSUMER_BATCH_SIZE`, `KAFKA_*`. */
export const layerConfig = Layer.unwrapEffect(Effect.gen(function*() {
  const topic: LoginTopic = yield* ServiceTopics.resolve(SeedTopics.loginEvents)
  return layer({
    topic,
    groupId: yield* ServiceTopics.group("account-service"),
    replica: yield* Replica.replica,
    batchSize: yield* Config.integer("CONSUMER_BATCH_SIZE").pipe(Config.withDefault(100)),
    kafka: yield* kafkaConfig
  })
}))
