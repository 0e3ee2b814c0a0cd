import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import kafkajs from "kafkajs"
import { connected } from "./internal/connected.ts"
import { KafkaClient } from "./KafkaClient.ts"
import { fromCause, KafkaError } from "./KafkaError.ts"

// kafkajs spreads its exports into `module.exports`, which Node's ESM loader cannot see as named exports.
const { ConfigResourceTypes } = kafkajs

export interface TopicSpec {
  readonly name: string
  readonly partitions: number
  /** Default 1; `TopicAdmin` resolves it from the topic and the cluster. */
  readonly replicationFactor?: number | undefined
  /** Broker topic configs, e.g. `{ "retention.ms": "604800000", "cleanup.policy": "delete" }`. */
  readonly config?: Readonly<Record<string, string>> | undefined
}

export interface PartitionInfo {
  readonly partition: number
  /** `-1` while the partition has no leader. */
  readonly leader: number
  readonly replicas: ReadonlyArray<number>
  /** The replicas caught up with the leader; an `acks=all` write waits for all of them. */
  readonly isr: ReadonlyArray<number>
}

export interface TopicDescription {
  readonly name: string
  readonly partitions: ReadonlyArray<PartitionInfo>
}

export interface ClusterInfo {
  readonly clusterId: string
  readonly brokers: ReadonlyArray<{ readonly nodeId: number; readonly host: string; readonly port: number }>
  readonly controller: number | null
}

export class Admin extends Context.Tag("@kpipe/kafka/Admin")<Admin, {
  /**
   * Creates the topics that do not exist yet and waits until the cluster's metadata shows a leader
   * for each of their partitions; returns the names it created.
   */
  readonly createTopics: (topics: ReadonlyArray<TopicSpec>) => Effect.Effect<ReadonlyArray<string>, KafkaError>
  readonly deleteTopics: (names: ReadonlyArray<string>) => Effect.Effect<void, KafkaError>
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
  readonly describeCluster: Effect.Effect<ClusterInfo, KafkaError>
  /** Partitions of existing topics with their leader, replicas and in-sync replicas. */
  readonly describeTopics: (names: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<TopicDescription>, KafkaError>
  /** The effective broker configs of each topic (its own settings and the broker defaults), by topic name. */
  readonly topicConfigs: (
    names: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyMap<string, Readonly<Record<string, string>>>, KafkaError>
  /** Committed offset per partition of `topic` for `groupId` (`-1` where nothing is committed). */
  readonly committedOffsets: (
    groupId: string,
    topic: string
  ) => Effect.Effect<ReadonlyArray<{ readonly partition: number; readonly offset: string }>, KafkaError>
  /** Each partition's first offset and the offset after its last record (`low` = `high`: empty). */
  readonly endOffsets: (
    topic: string
  ) => Effect.Effect<
    ReadonlyArray<{ readonly partition: number; readonly low: string; readonly high: string }>,
    KafkaError
  >
  /** The group's state and the ids of its current members. */
  readonly describeGroup: (
    groupId: string
  ) => Effect.Effect<{ readonly state: string; readonly memberIds: ReadonlyArray<string> }, KafkaError>
  /** Moves a group (with no running members) back to the earliest offsets of `topic`, for a replay. */
  readonly resetOffsets: (groupId: string, topic: string) => Effect.Effect<void, KafkaError>
}>() {}

export const make = Effect.gen(function*() {
  const { kafka } = yield* KafkaClient
  const admin = yield* connected(() => kafka.admin(), Duration.seconds(5))
  const call = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fromCause("Admin") })

  const listTopics = call(() => admin.listTopics())

  // Right after a topic is created, a broker that has not applied the metadata yet answers
  // UNKNOWN_TOPIC_OR_PARTITION (retriable), and kafkajs gives up on it for these calls.
  const propagated = <A>(effect: Effect.Effect<A, KafkaError>) =>
    Effect.retry(effect, {
      while: (error) => error.retriable,
      schedule: Schedule.spaced("100 millis").pipe(Schedule.upTo(Duration.seconds(5)))
    })

  const awaitLeaders = (names: ReadonlyArray<string>) =>
    call(() => admin.fetchTopicMetadata({ topics: [...names] })).pipe(
      Effect.filterOrFail(
        ({ topics }) =>
          topics.length === names.length &&
          topics.every((topic) => topic.partitions.length > 0 && topic.partitions.every((p) => p.leader >= 0)),
        () => new KafkaError({ reason: "Admin", retriable: true, cause: `no leaders yet for ${names.join(", ")}` })
      ),
      Effect.retry({
        while: (error) => error.retriable,
        schedule: Schedule.spaced("100 millis").pipe(Schedule.upTo(Duration.seconds(30)))
      })
    )

  const createTopics = (topics: ReadonlyArray<TopicSpec>) =>
    Effect.gen(function*() {
      const existing = new Set(yield* listTopics)
      const missing = topics.filter((topic) => !existing.has(topic.name))
      if (missing.length === 0) return []
      yield* call(() =>
        admin.createTopics({
          // kafkajs's own wait gives up when the broker it asks has not seen the new topic yet
          // (UNKNOWN_TOPIC_OR_PARTITION), which is normal for a moment on a multi-broker cluster.
          waitForLeaders: false,
          topics: missing.map((topic) => ({
            topic: topic.name,
            numPartitions: topic.partitions,
            replicationFactor: topic.replicationFactor ?? 1,
            configEntries: Object.entries(topic.config ?? {}).map(([name, value]) => ({ name, value }))
          }))
        })
      )
      yield* awaitLeaders(missing.map((topic) => topic.name))
      return missing.map((topic) => topic.name)
    }).pipe(Effect.withSpan("Admin.createTopics", { attributes: { topics: topics.map((topic) => topic.name) } }))

  const deleteTopics = (names: ReadonlyArray<string>) =>
    call(() => admin.deleteTopics({ topics: [...names] })).pipe(Effect.withSpan("Admin.deleteTopics"))

  const describeCluster = call(() => admin.describeCluster()).pipe(
    Effect.map((cluster): ClusterInfo => ({
      clusterId: cluster.clusterId,
      brokers: cluster.brokers,
      controller: cluster.controller
    }))
  )

  const describeTopics = (names: ReadonlyArray<string>) =>
    call(() => admin.fetchTopicMetadata({ topics: [...names] })).pipe(
      propagated,
      Effect.map(({ topics }) =>
        topics.map((topic): TopicDescription => ({
          name: topic.name,
          partitions: topic.partitions
            .map(({ isr, leader, partitionId, replicas }) => ({ partition: partitionId, leader, replicas, isr }))
            .sort((a, b) => a.partition - b.partition)
        }))
      ),
      Effect.withSpan("Admin.describeTopics")
    )

  const topicConfigs = (names: ReadonlyArray<string>) =>
    call(() =>
      admin.describeConfigs({
        includeSynonyms: false,
        resources: names.map((name) => ({ type: ConfigResourceTypes.TOPIC, name }))
      })
    ).pipe(
      propagated,
      Effect.map(({ resources }) =>
        new Map(resources.map((resource) => [
          resource.resourceName,
          Object.fromEntries(resource.configEntries.map((entry) => [entry.configName, entry.configValue]))
        ]))
      ),
      Effect.withSpan("Admin.topicConfigs")
    )

  const committedOffsets = (groupId: string, topic: string) =>
    call(() => admin.fetchOffsets({ groupId, topics: [topic] })).pipe(
      Effect.map((topics) =>
        (topics.find((entry) => entry.topic === topic)?.partitions ?? []).map(({ offset, partition }) => ({
          partition,
          offset
        }))
      )
    )

  const endOffsets = (topic: string) =>
    call(() => admin.fetchTopicOffsets(topic)).pipe(
      Effect.map((partitions) => partitions.map(({ high, low, partition }) => ({ partition, low, high })))
    )

  const resetOffsets = (groupId: string, topic: string) =>
    call(() => admin.resetOffsets({ groupId, topic, earliest: true })).pipe(
      Effect.withSpan("Admin.resetOffsets", { attributes: { groupId, topic } })
    )

  const describeGroup = (groupId: string) =>
    call(() => admin.describeGroups([groupId])).pipe(
      Effect.map(({ groups }) => ({
        state: groups[0]?.state ?? "Dead",
        memberIds: (groups[0]?.members ?? []).map((member) => member.memberId)
      }))
    )

  return Admin.of({
    createTopics,
    deleteTopics,
    listTopics,
    describeCluster,
    describeTopics,
    topicConfigs,
    committedOffsets,
    endOffsets,
    resetOffsets,
    describeGroup
  })
})

export const layer: Layer.Layer<Admin, KafkaError, KafkaClient> = Layer.scoped(Admin, make)
