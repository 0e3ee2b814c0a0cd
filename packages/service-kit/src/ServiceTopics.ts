import * as Topic from "@kpipe/pipeline/Topic"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"

/**
 * `TOPIC_PREFIX` (default empty) is put before every topic and consumer group name, so one broker
 * can carry isolated copies of the system (tests, several developers).
 */
export const prefix: Config.Config<string> = Config.string("TOPIC_PREFIX").pipe(Config.withDefault(""))

export const resolve = <A extends Topic.EventShape, I>(topic: Topic.Topic<A, I>) =>
  Effect.map(prefix, (p) => Topic.prefixed(topic, p))

export const group = (name: string) => Effect.map(prefix, (p) => `${p}${name}`)
