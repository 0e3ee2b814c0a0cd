// The kpipe relay as a deployment runs it: a process of its own with the library's layer and its
// settings from the environment (DATABASE_URL, KAFKA_BROKERS, OUTBOX_CONCURRENCY, OUTBOX_BATCH_SIZE).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { KafkaClient, Producer } from "@kpipe/kafka"
import { OutboxRelay } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as StageSpans from "./StageSpans.ts"

const Live = Layer.mergeAll(Database.layer, Producer.layer().pipe(Layer.provide(KafkaClient.layerFromEnv)))

Effect.gen(function*() {
  yield* Layer.build(OutboxRelay.layerConfig)
  yield* Console.log("compare-relay ready")
  return yield* Effect.never
}).pipe(StageSpans.recorded, Effect.scoped, Effect.provide(Live), NodeRuntime.runMain)
