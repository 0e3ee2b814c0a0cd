import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import * as Layer from "effect/Layer"
import * as AccountHttp from "./AccountHttp.ts"
import * as LoginConsumer from "./LoginConsumer.ts"
import { LoginStats } from "./LoginStats.ts"
import * as Migrations from "./Migrations.ts"

export const defaultDatabaseUrl = "postgres://postgres@127.0.0.1:5432/kpipe_account"

/** `DATABASE_URL` (default `kpipe_account`, created when missing), migrated; one database for all replicas. */
export const DatabaseLive = Database.layerMigrated(defaultDatabaseUrl, Migrations.all)

/** The login topic (and its dead-letter topic), under `TOPIC_PREFIX`, created when missing. */
export const TopicsLive = ServiceTopics.layerCreate([SeedTopics.loginEvents])

/**
 * The consumer and the HTTP API (`HttpApi.Api`, to serve), given a migrated database, Kafka
 * (`KafkaClient`, `Admin`) and the environment's configuration.
 */
export const layer = Layer.mergeAll(LoginConsumer.layerConfig, AccountHttp.ApiLive).pipe(
  Layer.provide(LoginStats.Default),
  Layer.provide(TopicsLive)
)
