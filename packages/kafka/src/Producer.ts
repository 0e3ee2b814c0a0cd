import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ScopedRef from "effect/ScopedRef"
import { type Admin, CompressionTypes, Partitioners, type Producer as KafkaProducer } from "kafkajs"
import { connected, connecting } from "./internal/connected.ts"
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

/**
 * A send to a topic deleted after this producer sent to it: kafkajs retries it for ever, and every
 * later metadata refresh of that kafkajs producer (it refreshes every topic it ever sent to) fails,
 * so sends to other topics hang too. A send pending this long has its producer's topics looked up,
 * then again every `watchEvery`, for as long as it is pending.
 */
const watchAfter = Duration.seconds(1)
const watchEvery = Duration.seconds(2)

/**
 * What a replaced kafkajs producer's sends still running inside kafkajs (given up on) fail with at
 * their next attempt, from its partitioner: nothing more of them is written, and, not retriable,
 * they are not retried.
 */
class Retired extends Error {
  readonly retriable = false
  constructor() {
    super("the producer was replaced by a new one; this send was given up")
    this.name = "KpipeProducerRetired"
  }
}

/** A connected kafkajs producer, with what kafkajs holds for it. */
interface Connection {
  readonly producer: KafkaProducer
  /** Every topic it was asked to send to: kafkajs refreshes the metadata of all of them together. */
  readonly topics: Set<string>
  /** Its sends that have not settled yet, including the ones given up on. */
  readonly sending: Set<Promise<unknown>>
  readonly isRetired: () => boolean
}

type Outcome<A> =
  | { readonly _tag: "Sent"; readonly value: A }
  | { readonly _tag: "Gone"; readonly connection: Connection; readonly missing: ReadonlyArray<string> }
  | { readonly _tag: "Replaced" }

export const make = Effect.fnUntraced(function*(options: ProducerOptions = {}) {
  const { kafka } = yield* KafkaClient
  const idempotent = options.idempotent ?? true
  const acks = -1
  const compression = options.compression === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None
  const disconnectTimeout = options.disconnectTimeout ?? Duration.seconds(5)
  const retries = options.retries ?? (idempotent ? Number.MAX_SAFE_INTEGER : 5)
  const connect = Effect.suspend(() => {
    let retired = false
    const sending = new Set<Promise<unknown>>()
    const create = () =>
      kafka.producer({
        idempotent,
        maxInFlightRequests: idempotent ? 1 : 5,
        allowAutoTopicCreation: false,
        createPartitioner: () => {
          const partition = Partitioners.DefaultPartitioner()
          return (args) => {
            if (retired) throw new Retired()
            return partition(args)
          }
        },
        // kafkajs decides before each attempt whether another may follow (`retryCount < retries`),
        // so a number that becomes 0 ends a retired producer's retries at its next attempt, also
        // where the partitioner is not reached (a metadata refresh that fails comes first).
        retry: { retries: { valueOf: () => retired ? 0 : retries } as unknown as number }
      })
    // Runs before `connected`'s disconnect (a scope's finalizers run in reverse): the sends given up
    // on end at their next attempt, then the producer disconnects. Disconnected first, kafkajs would
    // connect it again for their next attempt.
    const retire = (producer: KafkaProducer) =>
      Effect.suspend(() => {
        retired = true
        if (sending.size === 0) return Effect.void
        const settled = Promise.allSettled([...sending])
        return Effect.async<void>((resume) => void settled.then(() => resume(Effect.void))).pipe(
          Effect.interruptible,
          Effect.timeoutOption(disconnectTimeout),
          Effect.flatMap(Option.match({
            onSome: () => Effect.void,
            // Still running after the wait (kafkajs's waits between attempts are longer than that):
            // its last attempt may connect the producer again, so it is disconnected once more then.
            onNone: () =>
              Effect.logWarning(
                "A replaced Kafka producer still has sends given up on; it is disconnected once they end"
              ).pipe(
                Effect.annotateLogs({ pending: sending.size }),
                Effect.zipRight(Effect.sync(() => {
                  settled.then(() => producer.disconnect()).catch(() => undefined)
                }))
              )
          }))
        )
      })
    return connected(create, disconnectTimeout).pipe(
      Effect.tap((producer) => Effect.addFinalizer(() => retire(producer))),
      Effect.map((producer): Connection => ({ producer, topics: new Set(), sending, isRetired: () => retired }))
    )
  })
  const current = yield* ScopedRef.fromAcquire(connect)
  // Set before `current` is released (finalizers run in reverse): from then on no new producer.
  let stopped = false
  yield* Effect.addFinalizer(() => Effect.sync(() => (stopped = true)))
  // Replaces `stale` with a new producer (a new producer id, no topics), unless that happened already.
  const replacing = yield* Effect.makeSemaphore(1)
  const startOver = (stale: Connection) =>
    replacing.withPermits(1)(
      Effect.flatMap(
        ScopedRef.get(current),
        (now) => now === stale && !stopped ? ScopedRef.set(current, connect) : Effect.void
      )
    )
  // An idempotent send that failed or was given up may have been written without the answer coming
  // back, yet kafkajs hands its sequence numbers back: the next batch of as many messages to that
  // partition would carry the same numbers, and the broker would answer it as that write's duplicate
  // and drop it. So the next send goes on a new producer (a new id, numbering from 0).
  const unanswered = new WeakSet<Connection>()
  // A producer whose replacement failed (the broker away) is replaced at the next send.
  const usable = Effect.flatMap(
    ScopedRef.get(current),
    (connection) => {
      if (stopped) return Effect.succeed(connection)
      if (connection.isRetired()) return Effect.zipRight(startOver(connection), ScopedRef.get(current))
      if (!unanswered.has(connection)) return Effect.succeed(connection)
      return Effect.logWarning(
        "The last send of this producer failed without an answer; starting over with a new producer id"
      ).pipe(Effect.zipRight(startOver(connection)), Effect.zipRight(ScopedRef.get(current)))
    }
  )

  // kafkajs retries a send to a topic the broker does not have forever (UNKNOWN_TOPIC_OR_PARTITION
  // is retriable), which would hang the caller and every send queued behind it. Each topic is looked
  // up once before its first send; one that exists is looked up again only while a send hangs.
  const existing = new Set<string>()
  // Connecting is part of the use, so that interrupting a lookup (a watch whose send was answered,
  // the producer stopping) does not wait for a connection to a broker that is away.
  const disconnectAdmin = (admin: Admin) =>
    Effect.tryPromise(() => admin.disconnect()).pipe(
      Effect.interruptible,
      Effect.timeoutOption("5 seconds"),
      Effect.ignore
    )
  const lookUp = Effect.acquireUseRelease(
    Effect.sync(() => kafka.admin()),
    (admin) => connecting(admin, (a) => a.connect().then(() => a.listTopics()), disconnectAdmin, fromCause("Send")),
    disconnectAdmin
  )
  const topicsNotFound = (topics: ReadonlyArray<string>) =>
    new KafkaError({ reason: "Send", retriable: false, cause: new TopicsNotFound({ topics }) })
  const requireTopics = (topics: ReadonlyArray<string>) =>
    Effect.suspend(() => {
      const unknown = [...new Set(topics)].filter((topic) => !existing.has(topic))
      if (unknown.length === 0) return Effect.void
      return Effect.flatMap(lookUp, (names) => {
        const found = new Set(names)
        const missing = unknown.filter((topic) => !found.has(topic))
        for (const topic of unknown) if (found.has(topic)) existing.add(topic)
        return missing.length === 0 ? Effect.void : Effect.fail(topicsNotFound(missing))
      })
    })
  // The pending sends' watches (sends overlap when not idempotent) share one lookup per `watchEvery`,
  // run in the producer's scope: a watch that ends (its send answered) leaves it to finish.
  const scope = yield* Effect.scope
  let shared: { readonly at: number; readonly lookUp: Fiber.RuntimeFiber<Array<string>, KafkaError> } | undefined
  const watchLookUp = Effect.suspend(() => {
    const now = Date.now()
    if (shared !== undefined && now - shared.at < Duration.toMillis(watchEvery)) return Fiber.join(shared.lookUp)
    return Effect.flatMap(Effect.forkIn(lookUp, scope), (fiber) => {
      shared = { at: now, lookUp: fiber }
      return Fiber.join(fiber)
    })
  })
  // The topics of `connection` the broker no longer has, once a lookup finds some. A lookup that
  // fails (the broker away) tells nothing: the send goes on waiting, as kafkajs retries it.
  const gone = (connection: Connection) =>
    Effect.gen(function*() {
      yield* Effect.sleep(watchAfter)
      while (true) {
        const names = yield* Effect.option(watchLookUp)
        if (names._tag === "Some") {
          const found = new Set(names.value)
          const missing = [...connection.topics].filter((topic) => !found.has(topic))
          if (missing.length > 0) return missing
        }
        yield* Effect.sleep(watchEvery)
      }
    })

  // One attempt on the current producer, watched by `gone` once it is pending past `watchAfter`.
  const attemptOnce = <A>(topics: ReadonlyArray<string>, attempt: (producer: KafkaProducer) => Promise<A>) =>
    Effect.flatMap(usable, (connection): Effect.Effect<Outcome<A>, KafkaError> => {
      for (const topic of topics) connection.topics.add(topic)
      const sent = Effect.tryPromise({
        try: () => {
          // Marked before the request goes and cleared by its answer, so that no send can come
          // between a send given up on and its mark.
          if (idempotent) unanswered.add(connection)
          const promise = attempt(connection.producer)
          connection.sending.add(promise)
          const settled = () => connection.sending.delete(promise)
          promise.then(() => {
            settled()
            unanswered.delete(connection)
          }, settled)
          return promise
        },
        catch: fromCause("Send")
      }).pipe(
        Effect.map((value): Outcome<A> => ({ _tag: "Sent", value })),
        // Its producer was replaced meanwhile (sends overlap when not idempotent): it wrote nothing
        // after that, and goes again on the new producer.
        Effect.catchIf(
          () => connection.isRetired() && !stopped,
          () => Effect.succeed<Outcome<A>>({ _tag: "Replaced" })
        )
      )
      const watched = Effect.map(gone(connection), (missing): Outcome<A> => ({ _tag: "Gone", connection, missing }))
      // Interruptible even inside a caller's uninterruptible region (a batch that must be seen
      // through): the race ends its loser, a sleeping watch or a send given up on.
      return Effect.raceFirst(Effect.interruptible(sent), Effect.interruptible(watched))
    })
  // Once a topic of the producer is gone, the producer is replaced (the send given up on ends there,
  // and that topic no longer holds the new producer's metadata refreshes), the topic is looked up
  // again before its next send, and the send fails with `TopicsNotFound` if it named that topic, or
  // goes again on the new producer if it did not.
  const once = <A>(
    topics: ReadonlyArray<string>,
    attempt: (producer: KafkaProducer) => Promise<A>
  ): Effect.Effect<A, KafkaError> =>
    Effect.flatMap(attemptOnce(topics, attempt), (outcome) => {
      switch (outcome._tag) {
        case "Sent":
          return Effect.succeed(outcome.value)
        case "Replaced":
          return once(topics, attempt)
        case "Gone": {
          const named = outcome.missing.filter((topic) => topics.includes(topic))
          for (const topic of outcome.missing) existing.delete(topic)
          return Effect.logWarning(
            "A send waited on topics the broker no longer has; starting over with a new producer"
          ).pipe(
            Effect.annotateLogs({ missing: outcome.missing.join(","), topics: topics.join(",") }),
            Effect.zipRight(startOver(outcome.connection)),
            Effect.zipRight(named.length > 0 ? Effect.fail(topicsNotFound(named)) : once(topics, attempt))
          )
        }
      }
    })

  // A send the broker wrote but whose answer was lost, once given up (a broker crash, a cut), leaves
  // kafkajs reusing its sequence numbers: the broker refuses every later send of this producer id
  // (OUT_OF_ORDER_SEQUENCE_NUMBER), for ever. A new producer (a new id, numbering from 0) is the way
  // out; the send is tried once more on it. Whatever the lost write held may then be on the topic
  // twice, which is at least once: the consumers' idempotency takes it.
  const startingOver = <A>(topics: ReadonlyArray<string>, attempt: (producer: KafkaProducer) => Promise<A>) =>
    once(topics, attempt).pipe(
      Effect.catchIf(
        (error) => idempotent && losesProducerState(error),
        (error) =>
          Effect.logWarning(
            "The broker refused the producer's sequence numbers; starting over with a new producer id",
            error
          )
            .pipe(
              Effect.zipRight(Effect.flatMap(ScopedRef.get(current), startOver)),
              Effect.zipRight(once(topics, attempt))
            )
      )
    )
  const inFlight = yield* Effect.makeSemaphore(1)
  const serialize = idempotent ? inFlight.withPermits(1) : <A, E>(effect: Effect.Effect<A, E>) => effect

  const send = (record: ProducerRecord) =>
    requireTopics([record.topic]).pipe(
      Effect.zipRight(startingOver([record.topic], (producer) =>
        producer.send({ topic: record.topic, acks, compression, messages: record.messages.map(toKafkaMessage) }))),
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
      Effect.zipRight(
        startingOver([...new Set(records.map((record) => record.topic))], (producer) =>
          producer.sendBatch({
            acks,
            compression,
            topicMessages: records.map((record) => ({
              topic: record.topic,
              messages: record.messages.map(toKafkaMessage)
            }))
          }))
      ),
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
