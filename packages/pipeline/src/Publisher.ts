import { Producer } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import { eventHeaders, traceHeaders } from "./internal/headers.ts"
import type * as Topic from "./Topic.ts"

export class PublishError extends Data.TaggedError("PublishError")<{
  readonly reason: "Encode" | "Send"
  readonly topic: string
  readonly cause: ParseResult.ParseError | KafkaError
}> {
  override get message() {
    return `Publishing to ${this.topic} failed (${this.reason}): ${this.cause.message}`
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
