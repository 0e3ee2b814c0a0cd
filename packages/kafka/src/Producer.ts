import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ScopedRef from "effect/ScopedRef"
import { CompressionTypes, Partitioners, type Producer as KafkaProducer } from "kafkajs"
import { connected } from "./internal/connected.ts"
import { KafkaClient } from "./KafkaClient.ts"
import { fromCause, KafkaError, losesProducerState, TopicsNotFound } from "./KafkaError.ts"

export interface ProducerMessage {
  /** Messages with the same key land in the same partition, in send order. */
  readonly key: string | Buffer | null
  readonly value: string | Buffer | null
  readonly headers?: Readonly<Record<string, string | Buffer>> | undefined
  readonly partition?: number | undefined
  readonly timestamp?: string | undefined
}

export interface ProducerRecord {
  readonly topic: string
  readonly messages: ReadonlyArray<ProducerMessage>
}

export interface RecordMetadata {
  readonly topic: string
  readonly partition: number
  readonly baseOffset: string | undefined
}

export interface ProducerOptions {
  /**
   * Idempotent delivery (default): `acks=all`, one request in flight, broker-side dedup of
   * kafkajs's own retries. kafkajs loses or reorders messages when idempotent sends overlap, so
   * this service also runs sends one at a time.
   */
  readonly idempotent?: boolean | undefined
  readonly compression?: "none" | "gzip" | undefined
  /**
   * kafkajs's own retries of one send. An idempotent producer retries retriable errors without
   * limit by default (the broker drops the duplicates, and giving up would reorder a key); bound the
   * wait with a timeout around `send` instead. A plain producer retries 5 times.
   */
  readonly retries?: number | undefined
  readonly disconnectTimeout?: Duration.DurationInput | undefined
}

export class Producer extends Context.Tag("@kpipe/kafka/Producer")<Producer, {
  /** One request for any number of messages to one topic. */
  readonly send: (record: ProducerRecord) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>
  /** One request for messages to several topics. */
  readonly sendBatch: (
    records: ReadonlyArray<ProducerRecord>
  ) => Effect.Effect<ReadonlyArray<RecordMetadata>, KafkaError>
}>() {}

const toKafkaMessage = (message: ProducerMessage) => ({
  key: message.key,
  value: message.value,
  ...(message.headers !== undefined ? { headers: { ...message.headers } } : {}),
  ...(message.partition !== undefined ? { partition: message.partition } : {}),
  ...(message.timestamp !== undefined ? { timestamp: message.timestamp } : {})
})

const toMetadata = (metadata: ReadonlyArray<{ topicName: string; partition: number; baseOffset?: string }>) =>
  metadata.map((m): RecordMetadata => ({ topic: m.topicName, partition: m.partition, baseOffset: m.baseOffset }))

export const make = Effect.fnUntraced(function*(options: ProducerOptions = {}) {
  const { kafka } = yield* KafkaClient
  const idempotent = options.idempotent ?? true
  const acks = -1
  const compression = options.compression === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None
  const connect = connected(
    () =>
      kafka.producer({
        idempotent,
        maxInFlightRequests: idempotent ? 1 : 5,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: options.retries ?? (idempotent ? Number.MAX_SAFE_INTEGER : 5) }
      }),
    options.disconnectTimeout ?? Duration.seconds(5)
  )
  const current = yield* ScopedRef.fromAcquire(connect)
  // A send the broker wrote but whose answer was lost, once given up (a broker crash, a cut), leaves
  // kafkajs reusing its sequence numbers: the broker refuses every later send of this producer id
  // (OUT_OF_ORDER_SEQUENCE_NUMBER), for ever. A new producer (a new id, numbering from 0) is the way
  // out; the send is tried once more on it. Whatever the lost write held may then be on the topic
  // twice, which is at least once: the consumers' idempotency takes it.
  const startingOver = <A>(attempt: (producer: KafkaProducer) => Promise<A>) => {
    const once = Effect.flatMap(
      ScopedRef.get(current),
      (producer) => Effect.tryPromise({ try: () => attempt(producer), catch: fromCause("Send") })
    )
    return once.pipe(
      Effect.catchIf(
        (error) => idempotent && losesProducerState(error),
        (error) =>
          Effect.logWarning(
            "The broker refused the producer's sequence numbers; starting over with a new producer id",
            error
          )
            .pipe(
              Effect.zipRight(ScopedRef.set(current, connect)),
              Effect.zipRight(once)
            )
      )
    )
  }
  // kafkajs retries a send to a topic the broker does not have forever (UNKNOWN_TOPIC_OR_PARTITION
  // is retriable), which would hang the caller and every send queued behind it. Each topic is looked
  // up once before its first send; one that exists is not looked up again.
  const existing = new Set<string>()
  const lookUp = Effect.acquireUseRelease(
    Effect.tryPromise({
      try: async () => {
        const admin = kafka.admin()
        await admin.connect().catch((error: unknown) => admin.disconnect().then(() => Promise.reject(error)))
        return admin
      },
      catch: fromCause("Send")
    }),
    (admin) => Effect.tryPromise({ try: () => admin.listTopics(), catch: fromCause("Send") }),
    (admin) =>
      Effect.tryPromise(() => admin.disconnect()).pipe(
        Effect.interruptible,
        Effect.timeoutOption("5 seconds"),
        Effect.ignore
      )
  )
  const requireTopics = (topics: ReadonlyArray<string>) =>
    Effect.suspend(() => {
      const unknown = [...new Set(topics)].filter((topic) => !existing.has(topic))
      if (unknown.length === 0) return Effect.void
      return Effect.flatMap(lookUp, (names) => {
        const found = new Set(names)
        const missing = unknown.filter((topic) => !found.has(topic))
        for (const topic of unknown) if (found.has(topic)) existing.add(topic)
        return missing.length === 0 ? Effect.void : Effect.fail(
          new KafkaError({ reason: "Send", retriable: false, cause: new TopicsNotFound({ topics: missing }) })
        )
      })
    })
  const inFlight = yield* Effect.makeSemaphore(1)
  const serialize = idempotent ? inFlight.withPermits(1) : <A, E>(effect: Effect.Effect<A, E>) => effect

  const send = (record: ProducerRecord) =>
    requireTopics([record.topic]).pipe(
      Effect.zipRight(startingOver((producer) =>
        producer.send({ topic: record.topic, acks, compression, messages: record.messages.map(toKafkaMessage) })
      )),
      Effect.map(toMetadata),
      serialize,
      Effect.withSpan("Producer.send", {
        kind: "producer",
        attributes: {
          "messaging.system": "kafka",
          "messaging.destination.name": record.topic,
          "messaging.batch.message_count": record.messages.length
        }
      })
    )

  const sendBatch = (records: ReadonlyArray<ProducerRecord>) =>
    requireTopics(records.map((record) => record.topic)).pipe(
      Effect.zipRight(startingOver((producer) =>
        producer.sendBatch({
          acks,
          compression,
          topicMessages: records.map((record) => ({
            topic: record.topic,
            messages: record.messages.map(toKafkaMessage)
          }))
        })
      )),
      Effect.map(toMetadata),
      serialize,
      Effect.withSpan("Producer.sendBatch", {
        kind: "producer",
        attributes: {
          "messaging.system": "kafka",
          "messaging.batch.message_count": records.reduce((n, record) => n + record.messages.length, 0)
        }
      })
    )

  return Producer.of({ send, sendBatch })
})

export const layer = (options: ProducerOptions = {}): Layer.Layer<Producer, KafkaError, KafkaClient> =>
  Layer.scoped(Producer, make(options))
