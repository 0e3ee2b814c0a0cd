import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { EachBatchPayload, IHeaders, KafkaMessage } from "kafkajs"
import { connected } from "./internal/connected.ts"
import { KafkaClient } from "./KafkaClient.ts"
import { fromCause, KafkaError } from "./KafkaError.ts"

export interface ConsumerRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  /** Header names as sent; a repeated header's values are joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  readonly timestamp: string
}

export interface ConsumerOptions {
  readonly groupId: string
  readonly topics: ReadonlyArray<string>
  /** Where a group with no committed offset starts (default: the beginning, as the seeds' `earliest`). */
  readonly fromBeginning?: boolean | undefined
  readonly sessionTimeout?: number | undefined
  readonly rebalanceTimeout?: number | undefined
  readonly heartbeatInterval?: number | undefined
  readonly maxWaitTimeInMs?: number | undefined
  readonly partitionsConsumedConcurrently?: number | undefined
  readonly disconnectTimeout?: Duration.DurationInput | undefined
}

/**
 * A handler never fails: retrying and dead-lettering happen inside it, so a record's offset is
 * committed only once the handler has finished with it.
 */
export type Handler<R> = (record: ConsumerRecord) => Effect.Effect<void, never, R>

const headerValue = (value: IHeaders[string]): string | undefined =>
  value === undefined ? undefined : Array.isArray(value) ? value.map(String).join(", ") : String(value)

const toHeaders = (headers: IHeaders | undefined): Record<string, string> => {
  const result: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers ?? {})) {
    const text = headerValue(value)
    if (text !== undefined) result[name] = text
  }
  return result
}

const toRecord = (topic: string, partition: number, message: KafkaMessage): ConsumerRecord => ({
  topic,
  partition,
  offset: message.offset,
  key: message.key,
  value: message.value,
  headers: toHeaders(message.headers),
  timestamp: message.timestamp
})

const nextOffset = (offset: string) => (BigInt(offset) + 1n).toString()

/**
 * Runs a consumer group member until the enclosing scope closes. Records of one partition are
 * handled one after another; the group keeps the member while a slow handler runs because
 * heartbeats are sent from a side fiber. On scope close the member stops taking new records,
 * finishes the one in hand, commits what it finished and leaves the group.
 */
export const run = <R>(
  options: ConsumerOptions,
  handler: Handler<R>
): Effect.Effect<void, KafkaError, KafkaClient | Scope.Scope | R> =>
  Effect.gen(function*() {
    const { kafka } = yield* KafkaClient
    const runtime = yield* Effect.runtime<never>()
    // Created before the consumer, so its finalizer runs after `disconnect` has drained the handlers.
    const runPromise = yield* FiberSet.makeRuntimePromise<R>()
    const heartbeatEvery = Duration.millis(options.heartbeatInterval ?? 3_000)
    const rebalanceTimeout = options.rebalanceTimeout ?? 60_000

    const consumer = yield* connected(
      () =>
        kafka.consumer({
          groupId: options.groupId,
          sessionTimeout: options.sessionTimeout ?? 30_000,
          rebalanceTimeout,
          heartbeatInterval: options.heartbeatInterval ?? 3_000,
          maxWaitTimeInMs: options.maxWaitTimeInMs ?? 500,
          allowAutoTopicCreation: false
        }),
      options.disconnectTimeout ?? Duration.seconds(10)
    )

    const joined = yield* Deferred.make<void>()
    consumer.on(consumer.events.GROUP_JOIN, () => Deferred.unsafeDone(joined, Effect.void))
    consumer.on(consumer.events.CRASH, (event) =>
      Runtime.runFork(runtime)(
        Effect.logError("Kafka consumer crashed", event.payload.error).pipe(
          Effect.annotateLogs({ groupId: options.groupId, restart: event.payload.restart })
        )
      ))

    const keepAlive = (payload: EachBatchPayload) => {
      const beat = Effect.tryPromise({ try: () => payload.heartbeat(), catch: fromCause("Heartbeat") }).pipe(
        Effect.ignore,
        Effect.delay(heartbeatEvery),
        Effect.forever
      )
      return <A, E, R2>(self: Effect.Effect<A, E, R2>) => Effect.raceFirst(self, beat)
    }

    const processBatch = (payload: EachBatchPayload) =>
      Effect.gen(function*() {
        const { batch } = payload
        let commitFrom: string | undefined
        for (const message of batch.messages) {
          if (!payload.isRunning() || payload.isStale()) break
          yield* handler(toRecord(batch.topic, batch.partition, message)).pipe(keepAlive(payload))
          payload.resolveOffset(message.offset)
          commitFrom = nextOffset(message.offset)
        }
        if (commitFrom !== undefined && !payload.isStale()) {
          const offset = commitFrom
          yield* Effect.tryPromise({
            try: () => consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset }]),
            catch: fromCause("Commit")
          })
        }
      })

    yield* Effect.tryPromise({
      try: () => consumer.subscribe({ topics: [...options.topics], fromBeginning: options.fromBeginning ?? true }),
      catch: fromCause("Subscribe")
    })
    yield* Effect.tryPromise({
      try: () =>
        consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 1,
          eachBatch: (payload) => runPromise(processBatch(payload))
        }),
      catch: fromCause("Run")
    })
    yield* Deferred.await(joined).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(rebalanceTimeout),
        onTimeout: () =>
          new KafkaError({ reason: "Run", retriable: true, cause: `group ${options.groupId} was not joined in time` })
      })
    )
  }).pipe(Effect.withSpan("Consumer.run", { attributes: { "messaging.consumer.group.name": options.groupId } }))

export const layer = <R>(
  options: ConsumerOptions,
  handler: Handler<R>
): Layer.Layer<never, KafkaError, KafkaClient | R> => Layer.scopedDiscard(run(options, handler))
