import * as Layer from "effect/Layer"
import * as Http from "./Http.ts"
import { LoginStats } from "./LoginStats.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

/**
 * account-service: the HTTP API (`HttpApi.Api`, to serve) and the login consumer, its topic created
 * first. Needs a migrated database (`Database.layer`, one for all replicas), Kafka (`KafkaClient`,
 * `Admin`) and `Config`.
 */
export const layer = Layer.mergeAll(Http.layer, Workers.layer).pipe(
  Layer.provide(LoginStats.Default),
  Layer.provide(Topics.layer)
)
