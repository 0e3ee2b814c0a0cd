import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Producer } from "@kpipe/kafka"
import type { ConsumerRecord } from "@kpipe/kafka/Consumer"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import { type KafkaError, rejectsRecords } from "@kpipe/kafka/KafkaError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { redrivenFromHeader } from "./internal/headers.ts"
import { pgHeaders, pgText } from "./internal/pgText.ts"

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
 * and the monitor both do, a redelivery does) changes nothing. Except when the record failed again
 * after a redrive took its row (the source record read anew, a rebalance or an offset reset, before
 * the copy was applied): the row is OPEN again with the new failure. It had stayed REDRIVEN, and the
 * copy, then a duplicate of the failed claim, was never applied nor shown anywhere.
 */
export const recordFailure = (
  sql: SqlClient,
  letter: DeadLetterHeaders,
  record: { readonly key: Buffer | null; readonly value: Buffer | null; readonly headers: ConsumerRecord["headers"] },
  deadLetterTopic: string
) =>
  sql`
    INSERT INTO kpipe_failed_events ${sql.insert(rowOf(letter, record, deadLetterTopic))}
    ON CONFLICT (consumer_group, topic, partition, "offset") DO UPDATE SET
      status = 'OPEN', status_reason = 'failed again after its redrive', status_changed_at = clock_timestamp(),
      operation_id = NULL, error_tag = EXCLUDED.error_tag, error_message = EXCLUDED.error_message,
      error_stack = EXCLUDED.error_stack, attempts = EXCLUDED.attempts,
      first_attempt_at = EXCLUDED.first_attempt_at, last_attempt_at = EXCLUDED.last_attempt_at
    WHERE kpipe_failed_events.status = 'REDRIVEN'
      AND EXCLUDED.last_attempt_at > kpipe_failed_events.status_changed_at`.pipe(
    // A copy a redrive sent (its header names the failure it came from, of this group) that failed
    // again stands where that failure stood in its key's order.
    Effect.zipRight(
      record.headers[redrivenFromHeader] === undefined ? Effect.void : sql`
      UPDATE kpipe_failed_events f
      SET order_partition = coalesce(o.order_partition, o.partition), order_offset = coalesce(o.order_offset, o."offset")
      FROM kpipe_failed_events o
      WHERE f.consumer_group = ${pgText(letter.consumerGroup)} AND f.topic = ${pgText(letter.originalTopic)}
        AND f.partition = ${letter.originalPartition} AND f."offset" = ${letter.originalOffset}
        AND f.order_offset IS NULL
        AND o.id = CASE WHEN f.headers->>${redrivenFromHeader} ~ '^[0-9]{1,18}$'
          THEN (f.headers->>${redrivenFromHeader})::bigint END
        AND o.consumer_group = f.consumer_group AND o.topic = f.topic`.pipe(Effect.asVoid)
    )
  )

const rowOf = (
  letter: DeadLetterHeaders,
  record: { readonly key: Buffer | null; readonly value: Buffer | null; readonly headers: ConsumerRecord["headers"] },
  deadLetterTopic: string
) => ({
  consumerGroup: pgText(letter.consumerGroup),
  topic: pgText(letter.originalTopic),
  partition: letter.originalPartition,
  offset: letter.originalOffset,
  messageKey: record.key,
  payload: record.value,
  headers: pgHeaders(record.headers),
  eventId: letter.eventId === undefined ? null : pgText(letter.eventId),
  eventType: letter.eventType === undefined ? null : pgText(letter.eventType),
  errorTag: pgText(letter.errorTag),
  errorMessage: pgText(letter.errorMessage),
  errorStack: letter.errorStack === undefined ? null : pgText(letter.errorStack),
  attempts: letter.attempts,
  firstAttemptAt: DateTime.toDateUtc(letter.firstAttemptAt),
  lastAttemptAt: DateTime.toDateUtc(letter.lastAttemptAt),
  deadLetterTopic: pgText(deadLetterTopic)
})

/** A `kpipe_failed_events` row as read back (the unsent letters table has the same columns). */
export interface FailedEventRow {
  readonly consumerGroup: string
  readonly topic: string
  readonly partition: number
  readonly offset: string
  readonly messageKey: Buffer | null
  readonly payload: Buffer | null
  readonly headers: Record<string, string>
  readonly eventId: string | null
  readonly eventType: string | null
  readonly errorTag: string
  readonly errorMessage: string
  readonly errorStack: string | null
  readonly attempts: number
  readonly firstAttemptAt: Date
  readonly lastAttemptAt: Date
  readonly deadLetterTopic: string
}

interface UnsentRow extends FailedEventRow {
  readonly originalTimestamp: string
}

/**
 * The dead letters of `eventIds` in `consumerGroup` that were recorded but never sent (the process
 * died between the COMMIT and the send): a redelivery of those events sends them.
 */
export const unsent = (
  sql: SqlClient,
  consumerGroup: string,
  eventIds: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<DeadLetter>, SqlError> =>
  eventIds.length === 0 ? Effect.succeed([]) : sql<UnsentRow>`
    SELECT consumer_group, topic, partition, "offset"::text AS "offset", message_key, payload, headers, event_id,
           event_type, error_tag, error_message, error_stack, attempts, first_attempt_at, last_attempt_at,
           dead_letter_topic, original_timestamp
    FROM kpipe_dead_letters_unsent
    WHERE consumer_group = ${consumerGroup} AND event_id = ANY(${eventIds}::text[])`
    .pipe(
      Effect.map((rows) =>
        rows.map((row): DeadLetter => ({
          deadLetterTopic: row.deadLetterTopic,
          consumerGroup: row.consumerGroup,
          record: {
            topic: row.topic,
            partition: row.partition,
            offset: row.offset,
            key: row.messageKey,
            value: row.payload,
            headers: row.headers,
            timestamp: row.originalTimestamp
          },
          eventId: row.eventId ?? undefined,
          eventType: row.eventType ?? undefined,
          failure: { tag: row.errorTag, message: row.errorMessage, stack: row.errorStack ?? undefined },
          attempts: row.attempts,
          firstAttemptAt: DateTime.unsafeMake(row.firstAttemptAt),
          lastAttemptAt: DateTime.unsafeMake(row.lastAttemptAt)
        }))
      )
    )

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
   * Records the dead letter as decided and not yet sent: inside the caller's SQL transaction, next
   * to the consumer's claim, so that the claim and the letter commit together.
   */
  readonly record: (letter: DeadLetter) => Effect.Effect<void, DeadLetterError>
  /**
   * Publishes the record to its dead-letter topic, then (in one transaction) records the failure in
   * the failed-events table and drops it from the unsent ones. Call it after the transaction that
   * recorded it committed: a dead-letter record never exists for a failure that rolled back, and a
   * failed publish leaves no failed-events row.
   */
  readonly publish: (letter: DeadLetter) => Effect.Effect<void, DeadLetterError>
}>() {}

/** Error texts are capped, so that a dead-letter copy is barely larger than the record it copies. */
const maxMessageChars = 2_000
const maxStackChars = 4_000

const cap = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient
  // A producer of its own: a dead-letter topic that cannot take records must not stall the
  // relay's idempotent producer. Duplicates in a dead-letter topic are harmless.
  const producer = yield* Producer.make({ idempotent: false, retries: 3 })

  const envelopeOf = (letter: DeadLetter) => {
    const { record } = letter
    return new DeadLetterHeaders({
      originalTopic: record.topic,
      originalPartition: record.partition,
      originalOffset: record.offset,
      originalTimestamp: record.timestamp,
      originalKey: record.key?.toString("utf8") ?? "",
      consumerGroup: letter.consumerGroup,
      errorTag: letter.failure.tag,
      errorMessage: cap(letter.failure.message, maxMessageChars),
      ...(letter.failure.stack !== undefined ? { errorStack: cap(letter.failure.stack, maxStackChars) } : {}),
      ...(letter.eventId !== undefined ? { eventId: letter.eventId } : {}),
      ...(letter.eventType !== undefined ? { eventType: letter.eventType } : {}),
      attempts: letter.attempts,
      firstAttemptAt: letter.firstAttemptAt,
      lastAttemptAt: letter.lastAttemptAt
    })
  }

  const recordUnsent = (letter: DeadLetter) =>
    sql`
      INSERT INTO kpipe_dead_letters_unsent ${
      sql.insert({
        ...rowOf(envelopeOf(letter), letter.record, letter.deadLetterTopic),
        originalTimestamp: letter.record.timestamp
      })
    }
      ON CONFLICT (consumer_group, topic, partition, "offset") DO NOTHING`.pipe(
      Effect.asVoid,
      Effect.mapError((cause) => new DeadLetterError({ cause }))
    )

  const publish = (letter: DeadLetter) =>
    Effect.gen(function*() {
      const { record } = letter
      const envelope = envelopeOf(letter)
      const send = (headers: Record<string, string>) =>
        producer.send({
          topic: letter.deadLetterTopic,
          messages: [{ key: record.key, value: record.value, headers: { ...record.headers, ...headers } }]
        })
      const headers = yield* encodeHeaders(envelope)
      // A record close to the broker's size limit: its copy goes without the error's text (the
      // failed-events row keeps it), rather than never.
      yield* send(headers).pipe(
        Effect.catchIf(rejectsRecords, () =>
          Effect.flatMap(
            encodeHeaders(new DeadLetterHeaders({ ...envelope, errorMessage: "(omitted: too large)", errorStack: "" })),
            send
          ))
      )
      yield* sql.withTransaction(
        recordFailure(sql, envelope, record, letter.deadLetterTopic).pipe(
          Effect.zipRight(sql`DELETE FROM kpipe_dead_letters_unsent
            WHERE consumer_group = ${letter.consumerGroup} AND topic = ${record.topic}
              AND partition = ${record.partition} AND "offset" = ${record.offset}`)
        )
      )
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

  return DeadLetterSink.of({ record: recordUnsent, publish })
})

export const layer: Layer.Layer<DeadLetterSink, KafkaError, KafkaClient | SqlClient> = Layer.scoped(
  DeadLetterSink,
  make
)
