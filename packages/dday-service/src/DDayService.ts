import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"
import { Database } from "@kpipe/sql"
import * as Layer from "effect/Layer"
import { AuthClient } from "./AuthClient.ts"
import * as DDayHttp from "./DDayHttp.ts"
import { DDays } from "./DDays.ts"
import * as MemberDeadLetters from "./MemberDeadLetters.ts"
import { MemberReferences } from "./MemberReferences.ts"
import * as MemberSync from "./MemberSync.ts"
import * as Migrations from "./Migrations.ts"

export const defaultDatabaseUrl = "postgres://postgres@127.0.0.1:5432/kpipe_dday"

/** `DATABASE_URL` (default `kpipe_dday`, created when missing), migrated. */
export const DatabaseLive = Database.layerMigrated(defaultDatabaseUrl, Migrations.all)

/** `member-events` and `member-events.DLT` under `TOPIC_PREFIX`, created when missing. */
export const TopicsLive = ServiceTopics.layerCreate([SeedTopics.memberEvents])

/** The app services shared by the HTTP API and the consumer. Needs `SqlClient` and an `HttpClient` (for auth-service). */
export const ServicesLive = Layer.mergeAll(
  MemberSync.MemberSync.Default.pipe(Layer.provide(AuthClient.Default)),
  DDays.Default
).pipe(Layer.provideMerge(MemberReferences.Default))

/**
 * The member-events consumer, the dead-letter monitor and the HTTP API (`HttpApi.Api`, to serve),
 * configured from the environment. Needs a migrated database, Kafka (`KafkaClient`, `Admin`), an
 * `AlertSink` and an `HttpClient`.
 */
export const layer = Layer.mergeAll(MemberSync.layerConfig, MemberDeadLetters.layerConfig, DDayHttp.ApiLive).pipe(
  Layer.provide(ServicesLive),
  Layer.provide(TopicsLive)
)
