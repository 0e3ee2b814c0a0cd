import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** What every event on a topic carries: its type, the version of its shape, and its idempotency key. */
export interface EventShape {
  readonly type: string
  readonly version: number
  readonly eventId: string
}

/**
 * How many copies of each partition the brokers keep, and how many of them must have a write
 * before an `acks=all` producer gets its acknowledgement. `undefined` means "from the cluster":
 * `TopicAdmin` resolves it when it creates or verifies the topic (see `resolveReplication`).
 */
export interface Replication {
  readonly replicationFactor: number | undefined
  readonly minInSyncReplicas: number | undefined
}

export interface DeadLetterTopic extends Replication {
  readonly name: string
  readonly partitions: number
  readonly retention: Duration.Duration
}

/**
 * A topic and everything needed to produce to it and consume from it correctly: the value schema
 * (JSON on the wire), the key that keeps one aggregate's events in one partition and in order,
 * and where records that cannot be handled go.
 */
export interface Topic<A extends EventShape, I = unknown> extends Replication {
  readonly name: string
  readonly partitions: number
  readonly retention: Duration.Duration
  /**
   * How long the broker writes to one log segment before it rolls a new one (`segment.ms`). Kafka
   * deletes a segment only once its newest record is past the retention, so a record stays
   * readable for up to `retention + segment` (see `readableFor`).
   */
  readonly segment: Duration.Duration
  readonly cleanupPolicy: "delete" | "compact"
  /** Further broker topic configs (e.g. `max.message.bytes`), created and verified like the others. */
  readonly config: Readonly<Record<string, string>>
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
  /** Default: the smaller of one day and `retention`. */
  readonly segment?: Duration.DurationInput | undefined
  readonly cleanupPolicy?: "delete" | "compact" | undefined
  /** Default: `min(3, brokers)` of the cluster the topic is created on. */
  readonly replicationFactor?: number | undefined
  /** Default: `replicationFactor - 1` when that is at least 2, else 1. */
  readonly minInSyncReplicas?: number | undefined
  readonly config?: Readonly<Record<string, string>> | undefined
  readonly schema: Schema.Schema<A, I>
  readonly key: (event: A) => string
  readonly deadLetter: {
    readonly name: string
    readonly partitions?: number | undefined
    readonly retention: Duration.DurationInput
    /** Default: the topic's. */
    readonly replicationFactor?: number | undefined
    /** Default: the topic's. */
    readonly minInSyncReplicas?: number | undefined
  }
}

/** Names the `config` of `make` cannot set, because the topic has a field of its own for them. */
const ownFields: Readonly<Record<string, string>> = {
  "retention.ms": "retention",
  "segment.ms": "segment",
  "cleanup.policy": "cleanupPolicy",
  "min.insync.replicas": "minInSyncReplicas"
}

const checkReplication = (name: string, replicationFactor?: number, minInSyncReplicas?: number) => {
  if (replicationFactor !== undefined && !(Number.isInteger(replicationFactor) && replicationFactor >= 1)) {
    throw new RangeError(`topic ${name}: replicationFactor must be an integer >= 1, got ${replicationFactor}`)
  }
  if (minInSyncReplicas !== undefined && !(Number.isInteger(minInSyncReplicas) && minInSyncReplicas >= 1)) {
    throw new RangeError(`topic ${name}: minInSyncReplicas must be an integer >= 1, got ${minInSyncReplicas}`)
  }
  if (replicationFactor !== undefined && minInSyncReplicas !== undefined && minInSyncReplicas > replicationFactor) {
    // Every acks=all write would fail with NOT_ENOUGH_REPLICAS.
    throw new RangeError(
      `topic ${name}: minInSyncReplicas (${minInSyncReplicas}) exceeds replicationFactor (${replicationFactor})`
    )
  }
}

/**
 * @throws RangeError when the replication settings cannot work (not integers >= 1, or a min ISR above
 * the replication factor) or `config` sets one of the topic's own fields: topics are declared at
 * module level, so a mistake fails at import.
 */
export const make = <A extends EventShape, I>(options: TopicOptions<A, I>): Topic<A, I> => {
  const json = Schema.parseJson(options.schema)
  const config = options.config ?? {}
  for (const name of Object.keys(config)) {
    const field = ownFields[name]
    if (field !== undefined) throw new RangeError(`topic ${options.name}: set ${field}, not config["${name}"]`)
  }
  const deadLetterReplicationFactor = options.deadLetter.replicationFactor ?? options.replicationFactor
  const deadLetterMinInSyncReplicas = options.deadLetter.minInSyncReplicas ?? options.minInSyncReplicas
  checkReplication(options.name, options.replicationFactor, options.minInSyncReplicas)
  checkReplication(options.deadLetter.name, deadLetterReplicationFactor, deadLetterMinInSyncReplicas)
  const retention = Duration.decode(options.retention)
  return {
    name: options.name,
    partitions: options.partitions,
    retention,
    segment: options.segment === undefined
      ? Duration.min(Duration.days(1), retention)
      : Duration.decode(options.segment),
    cleanupPolicy: options.cleanupPolicy ?? "delete",
    replicationFactor: options.replicationFactor,
    minInSyncReplicas: options.minInSyncReplicas,
    config,
    schema: options.schema,
    key: options.key,
    deadLetter: {
      name: options.deadLetter.name,
      partitions: options.deadLetter.partitions ?? 1,
      retention: Duration.decode(options.deadLetter.retention),
      replicationFactor: deadLetterReplicationFactor,
      minInSyncReplicas: deadLetterMinInSyncReplicas
    },
    encode: Schema.encode(json),
    decode: decodeSafely(json)
  }
}

/**
 * `Schema.decodeUnknown`, with a value that makes the decoder itself throw (effect 3.22's union
 * lookup calls `String()` on a discriminator such as `{"toString":[]}`) answered as the ParseError
 * it is, never a defect: an undecodable record must dead-letter, not stall its partition.
 */
const decodeSafely = <A, I>(json: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(json)
  return (value: string): Effect.Effect<A, ParseResult.ParseError> =>
    Effect.suspend(() => decode(value)).pipe(
      Effect.catchAllDefect((defect) =>
        Effect.fail(
          new ParseResult.ParseError({
            issue: new ParseResult.Type(
              json.ast,
              value,
              `not decodable: ${defect instanceof Error ? defect.message : String(defect)}`
            )
          })
        )
      )
    )
}

/**
 * How long a record of the topic can stay readable: its retention plus its segment time, since the
 * broker deletes a segment only once the newest record in it is past the retention.
 */
export const readableFor = (topic: Pick<Topic<EventShape>, "retention" | "segment">): Duration.Duration =>
  Duration.sum(topic.retention, topic.segment)

/**
 * The replication a topic gets on a cluster of `brokers` brokers: its own settings where it has
 * them, else `min(3, brokers)` copies and a min ISR of one less (so one broker can be down without
 * stopping `acks=all` producers), or 1 on a single broker.
 */
export const resolveReplication = (
  replication: Replication,
  brokers: number
): { readonly replicationFactor: number; readonly minInSyncReplicas: number } => {
  const replicationFactor = replication.replicationFactor ?? Math.max(1, Math.min(3, brokers))
  const minInSyncReplicas = replication.minInSyncReplicas ?? (replicationFactor >= 2 ? replicationFactor - 1 : 1)
  return { replicationFactor, minInSyncReplicas }
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
