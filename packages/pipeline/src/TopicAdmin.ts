import { Admin } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import { type Any, resolveReplication } from "@kpipe/topic/Topic"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"

/** One setting of a live topic that is not what the registry declares. */
export interface Mismatch {
  readonly topic: string
  /** `exists`, `partitions`, `replicationFactor`, or a broker topic config such as `min.insync.replicas`. */
  readonly setting: string
  readonly expected: string
  readonly actual: string
}

/** Live topics differ from their declarations (reported at startup; an error in strict mode). */
export class TopicSettingsError extends Data.TaggedError("TopicSettingsError")<{
  readonly mismatches: ReadonlyArray<Mismatch>
}> {
  override get message(): string {
    return `Topics differ from the registry: ${this.mismatches.map(describe).join("; ")}`
  }
}

const describe = (mismatch: Mismatch) =>
  `${mismatch.topic} ${mismatch.setting} is ${mismatch.actual}, expected ${mismatch.expected}`

/**
 * `KAFKA_TOPICS_STRICT` (default: true when `NODE_ENV=production`): a topic whose live settings
 * differ from the registry fails startup instead of logging a warning.
 */
export const strict: Config.Config<boolean> = Config.all([
  Config.option(Config.boolean("KAFKA_TOPICS_STRICT")),
  Config.string("NODE_ENV").pipe(Config.withDefault(""))
]).pipe(
  Config.map(([explicit, env]) => Option.getOrElse(explicit, () => env === "production")),
  Config.withDescription(
    "Fail startup when a topic's live settings (partitions, replication, configs) differ from the registry; default: NODE_ENV=production"
  )
)

/**
 * Broker settings for the topics and their dead-letter topics on a cluster of `brokers` brokers
 * (replication resolved by `Topic.resolveReplication`), for `Admin.createTopics`.
 */
export const specs = (topics: ReadonlyArray<Any>, brokers = 1): ReadonlyArray<Admin.TopicSpec> => {
  const byName = new Map<string, Admin.TopicSpec>()
  for (const topic of topics) {
    const own = resolveReplication(topic, brokers)
    byName.set(topic.name, {
      name: topic.name,
      partitions: topic.partitions,
      replicationFactor: own.replicationFactor,
      config: {
        ...topic.config,
        "retention.ms": String(Duration.toMillis(topic.retention)),
        "segment.ms": String(Duration.toMillis(topic.segment)),
        "cleanup.policy": topic.cleanupPolicy,
        "min.insync.replicas": String(own.minInSyncReplicas)
      }
    })
    const deadLetter = resolveReplication(topic.deadLetter, brokers)
    byName.set(topic.deadLetter.name, {
      name: topic.deadLetter.name,
      partitions: topic.deadLetter.partitions,
      replicationFactor: deadLetter.replicationFactor,
      config: {
        "retention.ms": String(Duration.toMillis(topic.deadLetter.retention)),
        "cleanup.policy": "delete",
        "min.insync.replicas": String(deadLetter.minInSyncReplicas)
      }
    })
  }
  return [...byName.values()]
}

const brokerCount = Effect.map(Admin.Admin, (admin) => admin.describeCluster).pipe(
  Effect.flatten,
  Effect.map((cluster) => cluster.brokers.length)
)

/**
 * The topics among `names` that the cluster lists. Each listing asks one broker, and on a
 * multi-broker cluster a broker may not list a topic for a moment after its creation (a verify right
 * after a create reported it missing): a name not listed is looked for again, every 200 ms for up
 * to `patience`.
 */
const listed = (names: ReadonlyArray<string>, patience: Duration.DurationInput) =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const found = new Set<string>()
    yield* admin.listTopics.pipe(
      Effect.map((topics) => topics.forEach((topic) => found.add(topic))),
      Effect.repeat({
        schedule: Schedule.spaced("200 millis").pipe(Schedule.upTo(patience)),
        until: () => names.every((name) => found.has(name))
      })
    )
    return found
  })

/**
 * Compares the live topics with `specs`: missing topics, partition counts, replication factors and
 * configs. A topic no broker listed within `patience` is missing.
 */
export const compare = (
  specs: ReadonlyArray<Admin.TopicSpec>,
  patience: Duration.DurationInput = "1 second"
): Effect.Effect<ReadonlyArray<Mismatch>, KafkaError, Admin.Admin> =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const existing = yield* listed(specs.map((spec) => spec.name), patience)
    const present = specs.filter((spec) => existing.has(spec.name))
    const mismatches: Array<Mismatch> = specs
      .filter((spec) => !existing.has(spec.name))
      .map((spec) => ({ topic: spec.name, setting: "exists", expected: "yes", actual: "no" }))
    if (present.length === 0) return mismatches
    const names = present.map((spec) => spec.name)
    const [described, configs] = yield* Effect.all([admin.describeTopics(names), admin.topicConfigs(names)], {
      concurrency: 2
    })
    const byName = new Map(described.map((topic) => [topic.name, topic]))
    for (const spec of present) {
      const partitions = byName.get(spec.name)?.partitions ?? []
      if (partitions.length !== spec.partitions) {
        mismatches.push({
          topic: spec.name,
          setting: "partitions",
          expected: String(spec.partitions),
          actual: String(partitions.length)
        })
      }
      const factors = [...new Set(partitions.map((partition) => partition.replicas.length))].sort()
      const expectedFactor = spec.replicationFactor ?? 1
      if (factors.some((factor) => factor !== expectedFactor)) {
        mismatches.push({
          topic: spec.name,
          setting: "replicationFactor",
          expected: String(expectedFactor),
          actual: factors.join("/")
        })
      }
      const live = configs.get(spec.name) ?? {}
      for (const [name, expected] of Object.entries(spec.config ?? {})) {
        const actual = live[name]
        if (actual !== expected) {
          mismatches.push({ topic: spec.name, setting: name, expected, actual: actual ?? "unset" })
        }
      }
    }
    return mismatches
  })

/** What differs between the declared topics and the live ones on this cluster (empty: all as declared). */
export const verify = (topics: ReadonlyArray<Any>): Effect.Effect<ReadonlyArray<Mismatch>, KafkaError, Admin.Admin> =>
  Effect.flatMap(brokerCount, (brokers) => compare(specs(topics, brokers))).pipe(
    Effect.withSpan("TopicAdmin.verify")
  )

/**
 * Creates the topics (and their dead-letter topics) that do not exist yet, with the replication
 * resolved from the cluster's broker count, then verifies every one of them: a live topic that
 * differs (e.g. replication factor 1 on a 3-broker cluster) is logged as a warning, or fails with
 * `TopicSettingsError` when `strict` (production). Returns the names it created.
 */
export const create = (
  topics: ReadonlyArray<Any>
): Effect.Effect<ReadonlyArray<string>, KafkaError | TopicSettingsError | ConfigError.ConfigError, Admin.Admin> =>
  Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const brokers = yield* brokerCount
    const wanted = specs(topics, brokers)
    const created = yield* admin.createTopics(wanted)
    if (created.length > 0) yield* Effect.logInfo("Created topics", created)
    // Every wanted topic exists now; a broker that has not applied the creation yet gets 5 s.
    const mismatches = yield* compare(wanted, "5 seconds")
    if (mismatches.length > 0) {
      const error = new TopicSettingsError({ mismatches })
      if (yield* strict) return yield* error
      yield* Effect.logWarning(error.message).pipe(Effect.annotateLogs({ brokers }))
    }
    return created
  }).pipe(Effect.withSpan("TopicAdmin.create"))

/** Creates and verifies the topics at startup, before the Layers that produce or consume them. */
export const layerCreate = (
  topics: ReadonlyArray<Any>
): Layer.Layer<never, KafkaError | TopicSettingsError | ConfigError.ConfigError, Admin.Admin> =>
  Layer.effectDiscard(create(topics))
