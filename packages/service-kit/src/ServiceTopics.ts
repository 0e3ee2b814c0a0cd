import type { Admin } from "@kpipe/kafka"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import * as Topic from "@kpipe/pipeline/Topic"
import * as TopicAdmin from "@kpipe/pipeline/TopicAdmin"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"

/**
 * `TOPIC_PREFIX` (default empty) is put before every topic and consumer group name, so one broker
 * can carry isolated copies of the system (tests, several developers).
 */
export const prefix: Config.Config<string> = Config.string("TOPIC_PREFIX").pipe(
  Config.withDefault(""),
  Config.withDescription("Put before every topic and consumer group name: isolated copies of the system on one broker")
)

export const resolve = <A extends Topic.EventShape, I>(topic: Topic.Topic<A, I>) =>
  Effect.map(prefix, (p) => Topic.prefixed(topic, p))

export const group = (name: string) => Effect.map(prefix, (p) => `${p}${name}`)

/** Services (or replicas) starting together race to create the same topics; the loser finds them on a later try. */
const creationRace = Schedule.spaced("500 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

/** Creates the topics (and their dead-letter topics) under `TOPIC_PREFIX` when missing, and verifies them. */
export const create = (
  topics: ReadonlyArray<Topic.Any>
): Effect.Effect<
  ReadonlyArray<string>,
  KafkaError | TopicAdmin.TopicSettingsError | ConfigError.ConfigError,
  Admin.Admin
> =>
  Effect.flatMap(prefix, (p) => TopicAdmin.create(topics.map((topic) => Topic.prefixed(topic, p)))).pipe(
    Effect.retry({ schedule: creationRace, while: (error) => error._tag === "KafkaError" })
  )

/** `create` at startup, before the Layers that produce to or consume from the topics. */
export const layerCreate = (
  topics: ReadonlyArray<Topic.Any>
): Layer.Layer<never, KafkaError | TopicAdmin.TopicSettingsError | ConfigError.ConfigError, Admin.Admin> =>
  Layer.effectDiscard(create(topics))
