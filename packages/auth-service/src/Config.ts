import { ServiceConfig } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"

/**
 * Everything auth-service reads from the environment. The clients read their own (`KAFKA_*`,
 * `PG_*`, `OTEL_*`), and `ServiceTopics` reads `TOPIC_PREFIX`.
 */
export const config = EffectConfig.all({
  port: ServiceConfig.port(3001),
  databaseUrl: ServiceConfig.databaseUrl("kpipe_auth"),
  sessionTtl: EffectConfig.duration("SESSION_TTL").pipe(
    EffectConfig.withDefault(Duration.hours(24)),
    EffectConfig.withDescription("How long a sign-in's session token is valid")
  )
})

export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/auth-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv: Layer.Layer<Config, ConfigError.ConfigError> = Layer.effect(Config, config)
