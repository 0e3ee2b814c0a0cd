import * as Layer from "effect/Layer"
import { AuthClient } from "./AuthClient.ts"
import { DDays } from "./DDays.ts"
import * as Http from "./Http.ts"
import { MemberCopies } from "./MemberCopies.ts"
import { MemberSync } from "./MemberSync.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

/** The domain services the HTTP API and the consumer share. Needs `SqlClient`, an `HttpClient` and `Config`. */
export const services = Layer.mergeAll(MemberSync.Default.pipe(Layer.provide(AuthClient.Default)), DDays.Default).pipe(
  Layer.provideMerge(MemberCopies.Default)
)

/**
 * d-day-service: the HTTP API (`HttpApi.Api`, to serve), the member-events consumer and its
 * dead-letter monitor, its topic created first. Needs a migrated database (`Database.layer`), Kafka
 * (`KafkaClient`, `Admin`), an `AlertSink`, an `HttpClient` and `Config`.
 */
export const layer = Layer.mergeAll(Http.layer, Workers.layer).pipe(
  Layer.provide(services),
  Layer.provide(Topics.layer)
)
