import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { Producer } from "@kpipe/kafka"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/batchedPublisher.ts"
import { eventHeaders, traceHeaders } from "./internal/headers.ts"
import type * as Topic from "./Topic.ts"

/**
 * `ShuttingDown`: a batched publisher's scope closed before the event was sent; it was not.
 * `Expired`: it waited in a batched publisher's queue past `maxQueueTime`; it was not sent.
 */
export class PublishError extends Data.TaggedError("PublishError")<{
  readonly reason: "Encode" | "Send" | "ShuttingDown" | "Expired"
  readonly topic: string
  readonly cause?: ParseResult.ParseError | KafkaError | undefined
}> {
  override get message() {
    return `Publishing to ${this.topic} failed (${this.reason})${
      this.cause === undefined ? "" : `: ${this.cause.message}`
    }`
  }
}

/**
 * Publishes events straight to Kafka, typed by their topic: the value must be one of the topic's
 * events and the key is the topic's own. Use the outbox when the events must match a database
 * transaction; use this when there is none (one producer request for all `events`).
 */
export const publish = <A extends Topic.EventShape, I>(
  topic: Topic.Topic<A, I>,
  ...events: ReadonlyArray<A>
): Effect.Effect<void, PublishError, Producer.Producer> =>
  Effect.gen(function*() {
    if (events.length === 0) return
    const producer = yield* Producer.Producer
    const trace = yield* traceHeaders
    const messages = yield* Effect.forEach(events, (event) =>
      Effect.map(topic.encode(event), (value) => ({
        key: topic.key(event),
        value,
        headers: { ...trace, ...eventHeaders(event.eventId, event.type, event.version) }
      }))).pipe(Effect.mapError((cause) => new PublishError({ reason: "Encode", topic: topic.name, cause })))
    yield* producer.send({ topic: topic.name, messages }).pipe(
      Effect.mapError((cause) => new PublishError({ reason: "Send", topic: topic.name, cause }))
    )
  }).pipe(
    Effect.withSpan("Publisher.publish", {
      kind: "producer",
      attributes: { "messaging.destination.name": topic.name, "messaging.batch.message_count": events.length }
    })
  )

export interface BatchedOptions<A> {
  /** Most events per producer request (default 500). */
  readonly maxBatch?: number | undefined
  /** Senders, each with its own producer, sending side by side (default 1). */
  readonly lanes?: number | undefined
  /**
   * Which lane sends an event, with more than one: `"key"` (default) always the same lane for a key,
   * so a key's events stay in call order; `"any"` the first free lane, so one hot key can use all
   * lanes, and events of a key called within the same few milliseconds may land in either order.
   */
  readonly laneBy?: "key" | "any" | undefined
  /** The lanes' producers (default: idempotent, `acks=all`, kafkajs's retries). */
  readonly producer?: Producer.ProducerOptions | undefined
  /** Attributes of an event's `Publisher.publish` span. */
  readonly spanAttributes?: ((event: A) => Record<string, unknown>) | undefined
  /**
   * Longest an event waits in its lane's queue (behind earlier sends) before a sender takes it:
   * later, it fails with `Expired`, unsent (default: no limit). Bounds how long a call can take to
   * one wait plus its own send, for a caller that must know by then whether it was written.
   */
  readonly maxQueueTime?: Duration.DurationInput | undefined
}

export interface Batched<A> {
  /**
   * Publishes one event, in one producer request with whatever other calls are queued meanwhile.
   * Succeeds once Kafka acknowledged that request; fails with that request's error (then the event
   * was not accepted).
   */
  readonly publish: (event: A) => Effect.Effect<void, PublishError>
}

/**
 * A publisher whose calls are merged into producer requests: each call queues its event and waits
 * for its own outcome, while each lane sends whatever is queued (up to `maxBatch`) in one request.
 * Batches grow with load and a lone event is sent at once. With one lane (the default) events reach
 * the topic in call order. When the scope closes, queued events fail with `ShuttingDown`.
 */
export const makeBatched = <A extends Topic.EventShape, I>(
  topic: Topic.Topic<A, I>,
  options: BatchedOptions<A> = {}
): Effect.Effect<Batched<A>, KafkaError, KafkaClient | Scope.Scope> =>
  Effect.gen(function*() {
    const shuttingDown = new PublishError({ reason: "ShuttingDown", topic: topic.name })
    const expired = new PublishError({ reason: "Expired", topic: topic.name })
    const lanes = yield* internal.make<PublishError>({
      topic: topic.name,
      maxBatch: Math.max(1, options.maxBatch ?? 500),
      lanes: Math.max(1, options.lanes ?? 1),
      laneBy: options.laneBy ?? "key",
      producer: options.producer ?? {},
      sendFailed: (cause) => new PublishError({ reason: "Send", topic: topic.name, cause }),
      shuttingDown: () => shuttingDown,
      expired: () => expired
    })
    const maxQueueMs = options.maxQueueTime === undefined ? Infinity : Duration.toMillis(options.maxQueueTime)
    const attributes = options.spanAttributes
    // A leaf span (`useSpan`): nothing runs under it, and entering a span as the parent of others
    // costs more than a cheap request.
    const publish = (event: A) =>
      Effect.useSpan("Publisher.publish", {
        kind: "producer",
        attributes: {
          "messaging.destination.name": topic.name,
          ...(attributes === undefined ? {} : attributes(event))
        },
        captureStackTrace: false
      }, (span) =>
        Effect.gen(function*() {
          const value = yield* topic.encode(event).pipe(
            Effect.mapError((cause) => new PublishError({ reason: "Encode", topic: topic.name, cause }))
          )
          const { traceparent } = HttpTraceContext.toHeaders(span)
          const done = yield* Deferred.make<void, PublishError>()
          const queued = yield* lanes.offer({
            message: {
              key: topic.key(event),
              value,
              headers: {
                ...(traceparent === undefined ? {} : { traceparent }),
                ...eventHeaders(event.eventId, event.type, event.version)
              }
            },
            done,
            expiresAt: Date.now() + maxQueueMs
          })
          if (!queued) return yield* shuttingDown
          return yield* Deferred.await(done)
        }))
    return { publish }
  })

/** `makeBatched` as the layer of a tag of the application's. */
export const layerBatched = <Id, A extends Topic.EventShape, I>(
  tag: Context.Tag<Id, Batched<A>>,
  topic: Topic.Topic<A, I>,
  options: BatchedOptions<A> = {}
): Layer.Layer<Id, KafkaError, KafkaClient> => Layer.scoped(tag, makeBatched(topic, options))

/** Events per producer request of the batched publishers, tagged with their topic. */
export const batchSize = internal.batchSize
