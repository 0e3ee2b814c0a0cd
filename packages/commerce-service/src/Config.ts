import { Replica } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"

const positive = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

export const basePort = 3040

/** Everything commerce-service reads from the environment (the database and Kafka clients read their own). */
export const config = Config.all({
  port: Replica.port(basePort).pipe(Config.withDescription("HTTP port when PORT is unset: 3040 + REPLICA")),
  replica: Replica.replica,
  relayBatchSize: positive("OUTBOX_BATCH_SIZE", 1000, "Most outbox rows one relay claim publishes"),
  relayConcurrency: positive("OUTBOX_CONCURRENCY", 2, "Relay claim loops in this process"),
  relayPollInterval: Config.duration("OUTBOX_POLL_INTERVAL").pipe(
    Config.withDefault(Duration.seconds(1)),
    Config.withDescription("Fallback poll of the outbox when a commit notification is missed")
  ),
  outboxRetention: Config.duration("OUTBOX_RETENTION").pipe(
    Config.withDefault(Duration.days(1)),
    Config.withDescription("How long published outbox rows are kept before cleanup deletes them")
  )
})

/** The configuration, as a service: `layerFromEnv` reads it, `layer` gives it (tests). */
export class CommerceConfig extends Context.Tag("@kpipe/commerce-service/Config")<
  CommerceConfig,
  Config.Config.Success<typeof config>
>() {}

export const layer = (values: Context.Tag.Service<CommerceConfig>): Layer.Layer<CommerceConfig> =>
  Layer.succeed(CommerceConfig, values)

export const layerFromEnv: Layer.Layer<CommerceConfig, ConfigError.ConfigError> = Layer.effect(CommerceConfig, config)
