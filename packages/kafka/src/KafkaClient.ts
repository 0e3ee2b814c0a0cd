import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import { Kafka, logLevel as KafkaLogLevel } from "kafkajs"
import { makeLogCreator } from "./internal/logging.ts"

export interface KafkaClientConfig {
  readonly brokers: ReadonlyArray<string>
  readonly clientId: string
  readonly connectionTimeout?: number | undefined
  readonly requestTimeout?: number | undefined
  /** kafkajs's retries for connecting and for admin requests (default 5). */
  readonly retries?: number | undefined
  /** kafkajs messages below this level are dropped; the rest go to the Effect logger. */
  readonly logLevel?: LogLevel.Literal | undefined
}

/** The configured kafkajs instance that the producer, consumer and admin Layers connect through. */
export class KafkaClient extends Context.Tag("@kpipe/kafka/KafkaClient")<KafkaClient, {
  readonly kafka: Kafka
  readonly config: KafkaClientConfig
}>() {}

const kafkaLogLevels: Record<LogLevel.Literal, KafkaLogLevel> = {
  All: KafkaLogLevel.DEBUG,
  Trace: KafkaLogLevel.DEBUG,
  Debug: KafkaLogLevel.DEBUG,
  Info: KafkaLogLevel.INFO,
  Warning: KafkaLogLevel.WARN,
  Error: KafkaLogLevel.ERROR,
  Fatal: KafkaLogLevel.ERROR,
  None: KafkaLogLevel.NOTHING
}

export const make = Effect.fnUntraced(function*(config: KafkaClientConfig) {
  const runtime = yield* Effect.runtime<never>()
  const kafka = new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    connectionTimeout: config.connectionTimeout ?? 3_000,
    requestTimeout: config.requestTimeout ?? 30_000,
    retry: { retries: config.retries ?? 5 },
    logLevel: kafkaLogLevels[config.logLevel ?? "Warning"],
    logCreator: makeLogCreator(runtime)
  })
  return KafkaClient.of({ kafka, config })
})

export const layer = (config: KafkaClientConfig): Layer.Layer<KafkaClient> => Layer.effect(KafkaClient, make(config))

export const layerConfig = (
  config: Config.Config.Wrap<KafkaClientConfig>
): Layer.Layer<KafkaClient, ConfigError.ConfigError> =>
  Layer.effect(KafkaClient, Effect.flatMap(Config.unwrap(config), make))

/** `KAFKA_BROKERS` (comma-separated, default `127.0.0.1:9092`), `KAFKA_CLIENT_ID`, `KAFKA_LOG_LEVEL`. */
export const layerFromEnv: Layer.Layer<KafkaClient, ConfigError.ConfigError> = layerConfig({
  brokers: Config.array(Config.nonEmptyString(), "KAFKA_BROKERS").pipe(Config.withDefault(["127.0.0.1:9092"])),
  clientId: Config.nonEmptyString("KAFKA_CLIENT_ID").pipe(Config.withDefault("kpipe")),
  logLevel: Config.literal("All", "Trace", "Debug", "Info", "Warning", "Error", "Fatal", "None")("KAFKA_LOG_LEVEL")
    .pipe(Config.withDefault("Warning" as const))
})
