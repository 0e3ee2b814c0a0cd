import { OutboxRelay } from "@kpipe/pipeline"
import { AdminToken, Replica } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"

const positive = (name: string, fallback: number, description: string) =>
  EffectConfig.integer(name).pipe(
    EffectConfig.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    EffectConfig.withDefault(fallback),
    EffectConfig.withDescription(description)
  )

export const basePort = 3040

/** Everything commerce-service reads from the environment (the database and Kafka clients read their own). */
export const config = EffectConfig.all({
  port: Replica.port(basePort).pipe(EffectConfig.withDescription("HTTP port when PORT is unset: 3040 + REPLICA")),
  replica: Replica.replica,
  adminToken: AdminToken.config,
  relayBatchSize: positive("OUTBOX_BATCH_SIZE", 1000, "Most outbox rows one relay claim publishes"),
  relayConcurrency: positive("OUTBOX_CONCURRENCY", 2, "Relay claim loops in this process"),
  relayPollInterval: EffectConfig.duration("OUTBOX_POLL_INTERVAL").pipe(
    EffectConfig.withDefault(Duration.seconds(1)),
    EffectConfig.withDescription("Fallback poll of the outbox when a commit notification is missed")
  ),
  outboxRetention: EffectConfig.duration("OUTBOX_RETENTION").pipe(
    EffectConfig.withDefault(OutboxRelay.defaultRetention),
    EffectConfig.withDescription(
      "How long published outbox rows are kept before cleanup deletes them (0: deleted on publish)"
    )
  )
})

/** The configuration, as a service: `layerFromEnv` reads it, `layer` gives it (tests). */
export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/commerce-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv: Layer.Layer<Config, ConfigError.ConfigError> = Layer.effect(Config, config)
