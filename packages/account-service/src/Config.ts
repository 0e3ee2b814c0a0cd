import { ConsumerSettings, Replica, ServiceConfig } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

/**
 * Everything account-service reads from the environment. The clients read their own (`KAFKA_BROKERS`,
 * `PG_*`, `OTEL_*`), and `ServiceTopics` reads `TOPIC_PREFIX`.
 */
export const config = EffectConfig.all({
  replica: Replica.replica,
  port: ServiceConfig.port(Replica.port(3010)),
  databaseUrl: ServiceConfig.databaseUrl("kpipe_account"),
  batchSize: EffectConfig.integer("CONSUMER_BATCH_SIZE").pipe(
    EffectConfig.withDefault(100),
    EffectConfig.withDescription("Records of a partition applied in one transaction")
  ),
  consumer: ConsumerSettings.config()
})

export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/account-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv: Layer.Layer<Config, ConfigError.ConfigError> = Layer.effect(Config, config)
