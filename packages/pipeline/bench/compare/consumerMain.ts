// The idempotent consumer of the pipeline bench (one insert per delivered batch into bench_applied)
// as a process of its own: COMPARE_TOPIC, COMPARE_GROUP, DATABASE_URL, KAFKA_BROKERS and the
// consumer's BENCH_* settings (BENCH_CONSUMER_BATCH, BENCH_CONSUMER_CONCURRENCY, BENCH_PARTITIONS).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { KafkaClient } from "@kpipe/kafka"
import { DeadLetter } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { startConsumer } from "../internal/blocks.ts"
import { BenchConfig } from "../internal/config.ts"
import { benchTopic } from "../internal/events.ts"
import * as StageSpans from "./StageSpans.ts"

const Live = Layer.mergeAll(KafkaClient.layerFromEnv, DeadLetter.layer.pipe(Layer.provide(KafkaClient.layerFromEnv)))
  .pipe(Layer.provideMerge(Database.layer))

Effect.gen(function*() {
  const config = yield* BenchConfig
  const topic = benchTopic("compare", config.partitions, yield* Config.string("COMPARE_TOPIC"))
  yield* startConsumer(topic, yield* Config.string("COMPARE_GROUP"), config)
  yield* Console.log("compare-consumer ready")
  return yield* Effect.never
}).pipe(StageSpans.recorded, Effect.scoped, Effect.provide(Live), NodeRuntime.runMain)
