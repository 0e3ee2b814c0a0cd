import * as Layer from "effect/Layer"
import * as Http from "./Http.ts"
import { Members } from "./Members.ts"
import { SessionTokens } from "./SessionTokens.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

/**
 * auth-service: the HTTP API (`HttpApi.Api`, to serve) and the outbox relay, its topics created
 * first. Needs a migrated database (`Database.layer`), Kafka (`KafkaClient`, `Admin`) and `Config`.
 */
export const layer = Layer.mergeAll(Http.layer, Workers.layer).pipe(
  Layer.provide(Layer.merge(Members.Default, SessionTokens.Default)),
  Layer.provide(Topics.layer)
)
