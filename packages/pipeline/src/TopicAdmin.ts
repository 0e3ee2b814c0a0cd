import { Admin } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import type { Any } from "@kpipe/topic/Topic"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** Broker settings for the topics and their dead-letter topics, for `Admin.createTopics`. */
export const specs = (topics: ReadonlyArray<Any>): ReadonlyArray<Admin.TopicSpec> => {
  const byName = new Map<string, Admin.TopicSpec>()
  for (const topic of topics) {
    byName.set(topic.name, {
      name: topic.name,
      partitions: topic.partitions,
      config: {
        "retention.ms": String(Duration.toMillis(topic.retention)),
        "cleanup.policy": topic.cleanupPolicy
      }
    })
    byName.set(topic.deadLetter.name, {
      name: topic.deadLetter.name,
      partitions: topic.deadLetter.partitions,
      config: { "retention.ms": String(Duration.toMillis(topic.deadLetter.retention)), "cleanup.policy": "delete" }
    })
  }
  return [...byName.values()]
}

/** Creates the topics (and their dead-letter topics) that do not exist yet; returns the names it created. */
export const create = (topics: ReadonlyArray<Any>): Effect.Effect<ReadonlyArray<string>, KafkaError, Admin.Admin> =>
  Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(specs(topics))).pipe(
    Effect.tap((created) => created.length > 0 ? Effect.logInfo("Created topics", created) : Effect.void),
    Effect.withSpan("TopicAdmin.create")
  )

/** Creates the topics at startup, before the Layers that produce or consume them. */
export const layerCreate = (topics: ReadonlyArray<Any>): Layer.Layer<never, KafkaError, Admin.Admin> =>
  Layer.effectDiscard(create(topics))
