import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Producer } from "@kpipe/kafka"
import type { ConsumerRecord } from "@kpipe/kafka/Consumer"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

const header = <S extends Schema.Schema.All>(schema: S, name: string) =>
  Schema.propertySignature(schema).pipe(Schema.fromKey(`kpipe-dlt-${name}`))

/**
 * What a dead-letter record says about itself, carried in its headers (the value and key are the
 * original record's bytes, untouched, and its original headers, `traceparent` included, stay).
 */
export class DeadLetterHeaders extends Schema.Class<DeadLetterHeaders>("DeadLetterHeaders")({
  originalTopic: header(Schema.String, "original-topic"),
  originalPartition: header(Schema.NumberFromString, "original-partition"),
  originalOffset: header(Schema.String, "original-offset"),
  originalTimestamp: header(Schema.String, "original-timestamp"),
  originalKey: header(Schema.String, "original-key"),
  consumerGroup: header(Schema.String, "consumer-group"),
  errorTag: header(Schema.String, "error-tag"),
  errorMessage: header(Schema.String, "error-message"),
  errorStack: Schema.optionalWith(Schema.String, { exact: true }).pipe(Schema.fromKey("kpipe-dlt-error-stack")),
  eventId: Schema.optionalWith(Schema.String, { exact: true }).pipe(Schema.fromKey("kpipe-dlt-event-id")),
  eventType: Schema.optionalWith(Schema.String, { exact: true }).pipe(Schema.fromKey("kpipe-dlt-event-type")),
  attempts: header(Schema.NumberFromString, "attempts"),
  firstAttemptAt: header(Schema.DateTimeUtc, "first-attempt-at"),
  lastAttemptAt: header(Schema.DateTimeUtc, "last-attempt-at")
}) {}

const encodeHeaders = Schema.encode(DeadLetterHeaders)
const decodeHeaders = Schema.decodeUnknown(DeadLetterHeaders)

/** Reads a record from a dead-letter topic: its failure details, and the original key and value. */
export const decode = (
  record: ConsumerRecord
): Effect.Effect<
  { readonly letter: DeadLetterHeaders; readonly key: Buffer | null; readonly value: Buffer | null },
  ParseResult.ParseError
> => Effect.map(decodeHeaders(record.headers), (letter) => ({ letter, key: record.key, value: record.value }))

/**
 * The failed-events row of a dead letter, keyed by its source record: recording it again (the sink
 * and the monitor both do, a redelivery does) changes nothing.
 */
export const recordFailure = (
  sql: SqlClient,
  letter: DeadLetterHeaders,
  record: { readonly key: Buffer | null; readonly value: Buffer | null; readonly headers: ConsumerRecord["headers"] },
  deadLetterTopic: string
) =>
  sql`
    INSERT INTO kpipe_failed_events ${
    sql.insert({
      consumerGroup: letter.consumerGroup,
      topic: letter.originalTopic,
      partition: letter.originalPartition,
      offset: letter.originalOffset,
      messageKey: record.key,
      payload: record.value,
      headers: JSON.stringify(record.headers),
      eventId: letter.eventId ?? null,
      eventType: letter.eventType ?? null,
      errorTag: letter.errorTag,
      errorMessage: letter.errorMessage,
      errorStack: letter.errorStack ?? null,
      attempts: letter.attempts,
      firstAttemptAt: DateTime.toDateUtc(letter.firstAttemptAt),
      lastAttemptAt: DateTime.toDateUtc(letter.lastAttemptAt),
      deadLetterTopic
    })
  }
    ON CONFLICT (consumer_group, topic, partition, "offset") DO NOTHING`

export interface Failure {
  readonly tag: string
  readonly message: string
  readonly stack?: string | undefined
}

export interface DeadLetter {
  readonly deadLetterTopic: string
  readonly consumerGroup: string
  readonly record: ConsumerRecord
  readonly eventId?: string | undefined
  readonly eventType?: string | undefined
  readonly failure: Failure
  readonly attempts: number
  readonly firstAttemptAt: DateTime.Utc
  readonly lastAttemptAt: DateTime.Utc
}

/** The dead-letter publish or its failed-events row did not happen; the source offset must not be committed. */
export class DeadLetterError extends Data.TaggedError("DeadLetterError")<{
  readonly cause: KafkaError | SqlError | ParseResult.ParseError
}> {
  override get message() {
    return `Dead-lettering failed: ${this.cause.message}`
  }
}

export class DeadLetterSink extends Context.Tag("@kpipe/pipeline/DeadLetterSink")<DeadLetterSink, {
  /**
   * Records the failure in the failed-events table and publishes the record to its dead-letter
   * topic. Inside the caller's SQL transaction when there is one, so a failed publish leaves no row.
   */
  readonly publish: (letter: DeadLetter) => Effect.Effect<void, DeadLetterError>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  // A producer of its own: a dead-letter topic that cannot take records must not stall the
  // relay's idempotent producer. Duplicates in a dead-letter topic are harmless.
  const producer = yield* Producer.make({ idempotent: false, retries: 3 })

  const publish = (letter: DeadLetter) =>
    Effect.gen(function*() {
      const { record } = letter
      const envelope = new DeadLetterHeaders({
        originalTopic: record.topic,
        originalPartition: record.partition,
        originalOffset: record.offset,
        originalTimestamp: record.timestamp,
        originalKey: record.key?.toString("utf8") ?? "",
        consumerGroup: letter.consumerGroup,
        errorTag: letter.failure.tag,
        errorMessage: letter.failure.message,
        ...(letter.failure.stack !== undefined ? { errorStack: letter.failure.stack } : {}),
        ...(letter.eventId !== undefined ? { eventId: letter.eventId } : {}),
        ...(letter.eventType !== undefined ? { eventType: letter.eventType } : {}),
        attempts: letter.attempts,
        firstAttemptAt: letter.firstAttemptAt,
        lastAttemptAt: letter.lastAttemptAt
      })
      const headers = yield* encodeHeaders(envelope)
      yield* recordFailure(sql, envelope, record, letter.deadLetterTopic)
      yield* producer.send({
        topic: letter.deadLetterTopic,
        messages: [{ key: record.key, value: record.value, headers: { ...record.headers, ...headers } }]
      })
    }).pipe(
      Effect.mapError((cause) => new DeadLetterError({ cause })),
      Effect.withSpan("DeadLetterSink.publish", {
        kind: "producer",
        attributes: {
          "messaging.destination.name": letter.deadLetterTopic,
          "kpipe.error_tag": letter.failure.tag,
          "kpipe.attempts": letter.attempts
        }
      })
    )

  return DeadLetterSink.of({ publish })
})

export const layer: Layer.Layer<DeadLetterSink, KafkaError, KafkaClient | SqlClient> = Layer.scoped(
  DeadLetterSink,
  make
)
