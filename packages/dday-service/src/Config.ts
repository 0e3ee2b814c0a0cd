import { ConsumerSettings, ServiceConfig } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"

/**
 * Everything d-day-service reads from the environment. The clients read their own (`KAFKA_BROKERS`,
 * `PG_*`, `ALERT_WEBHOOK_URL`, `OTEL_*`), and `ServiceTopics` reads `TOPIC_PREFIX`.
 */
export const config = EffectConfig.all({
  port: ServiceConfig.port(3002),
  databaseUrl: ServiceConfig.databaseUrl("kpipe_dday"),
  authServiceUrl: EffectConfig.string("AUTH_SERVICE_URL").pipe(
    EffectConfig.withDefault("http://127.0.0.1:3001"),
    EffectConfig.withDescription("auth-service, asked for a member the member events have not brought yet")
  ),
  authTimeout: EffectConfig.integer("AUTH_TIMEOUT_MS").pipe(
    EffectConfig.map(Duration.millis),
    EffectConfig.withDefault(Duration.seconds(2)),
    EffectConfig.withDescription(
      "Per attempt of a fetch from auth-service (it runs inside the member-sync transaction)"
    )
  ),
  consumer: ConsumerSettings.config()
})

export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/dday-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv: Layer.Layer<Config, ConfigError.ConfigError> = Layer.effect(Config, config)
