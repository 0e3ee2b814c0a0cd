import * as Layer from "effect/Layer"
import { Freshness } from "./Freshness.ts"
import * as Http from "./Http.ts"
import { MetricsStore } from "./MetricsStore.ts"
import { Reconciliation } from "./Reconciliation.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

/**
 * The domain services. Need `SqlClient` (migrated), `Config`, an `HttpClient` (for commerce-service)
 * and Kafka's `Admin` (the reconciliation reads the consumers' positions).
 */
export const domain = Layer.mergeAll(Reconciliation.Default, Freshness.Default).pipe(
  Layer.provideMerge(MetricsStore.Default)
)

/**
 * metrics-service but the HTTP server: the API's handlers (`HttpApi.Api`), the consumers and the
 * dead-letter monitors, with the topics created. Needs infrastructure only: `SqlClient` (migrated
 * with `Migrations.all`), `KafkaClient`, `Admin`, an `AlertSink`, an `HttpClient` and `Config`.
 */
export const layer = Layer.mergeAll(Http.layer, Workers.layer).pipe(
  Layer.provide(domain),
  Layer.provide(Topics.layer)
)
