import { SeedTopics } from "@kpipe/contracts"
import type { Consumer } from "@kpipe/kafka"
import { DeadLetterMonitor, type Topic } from "@kpipe/pipeline"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

export interface Options {
  readonly topic: Topic.Any
  readonly groupId: string
  readonly kafka?: Omit<Consumer.ConsumerOptions, "groupId" | "topics"> | undefined
}

/**
 * S1's DLT consumer: every record on the member topic's dead-letter topic is logged in detail, kept
 * in `kpipe_failed_events` for manual handling, raised through the `AlertSink` and counted.
 */
export const layer = (options: Options) => DeadLetterMonitor.layer(options)

/** On `member-events.DLT` under `TOPIC_PREFIX`, in group `d-day-service-dlt`. */
export const layerConfig = Layer.unwrapEffect(Effect.gen(function*() {
  const topic = yield* ServiceTopics.resolve(SeedTopics.memberEvents)
  return layer({ topic, groupId: yield* ServiceTopics.group("d-day-service-dlt") })
}))
