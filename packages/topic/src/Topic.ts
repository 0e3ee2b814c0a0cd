import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** What every event on a topic carries: its type, the version of its shape, and its idempotency key. */
export interface EventShape {
  readonly type: string
  readonly version: number
  readonly eventId: string
}

export interface DeadLetterTopic {
  readonly name: string
  readonly partitions: number
  readonly retention: Duration.Duration
}

/**
 * A topic and everything needed to produce to it and consume from it correctly: the value schema
 * (JSON on the wire), the key that keeps one aggregate's events in one partition and in order,
 * and where records that cannot be handled go.
 */
export interface Topic<A extends EventShape, I = unknown> {
  readonly name: string
  readonly partitions: number
  readonly retention: Duration.Duration
  readonly cleanupPolicy: "delete" | "compact"
  /** Decodes every accepted version of each event; encodes the current one. */
  readonly schema: Schema.Schema<A, I>
  readonly key: (event: A) => string
  readonly deadLetter: DeadLetterTopic
  /** JSON text of one event. */
  readonly encode: (event: A) => Effect.Effect<string, ParseResult.ParseError>
  readonly decode: (value: string) => Effect.Effect<A, ParseResult.ParseError>
}

/** The events a topic carries. */
export type EventOf<T> = T extends Topic<infer A, infer _I> ? A : never

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Any = Topic<any, any>

export interface TopicOptions<A extends EventShape, I> {
  readonly name: string
  readonly partitions: number
  readonly retention: Duration.DurationInput
  readonly cleanupPolicy?: "delete" | "compact" | undefined
  readonly schema: Schema.Schema<A, I>
  readonly key: (event: A) => string
  readonly deadLetter: {
    readonly name: string
    readonly partitions?: number | undefined
    readonly retention: Duration.DurationInput
  }
}

export const make = <A extends EventShape, I>(options: TopicOptions<A, I>): Topic<A, I> => {
  const json = Schema.parseJson(options.schema)
  return {
    name: options.name,
    partitions: options.partitions,
    retention: Duration.decode(options.retention),
    cleanupPolicy: options.cleanupPolicy ?? "delete",
    schema: options.schema,
    key: options.key,
    deadLetter: {
      name: options.deadLetter.name,
      partitions: options.deadLetter.partitions ?? 1,
      retention: Duration.decode(options.deadLetter.retention)
    },
    encode: Schema.encode(json),
    decode: Schema.decodeUnknown(json)
  }
}

/**
 * The same topic under `prefix` (dead-letter topic included): one broker can host several isolated
 * copies of a system, e.g. one per test run.
 */
export const prefixed = <A extends EventShape, I>(topic: Topic<A, I>, prefix: string): Topic<A, I> =>
  prefix === "" ? topic : {
    ...topic,
    name: `${prefix}${topic.name}`,
    deadLetter: { ...topic.deadLetter, name: `${prefix}${topic.deadLetter.name}` }
  }
