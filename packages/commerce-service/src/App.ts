import * as Layer from "effect/Layer"
import * as Http from "./Http.ts"
import { Orders } from "./Orders.ts"
import { Products } from "./Products.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

/** The domain services the HTTP handlers use. Need `SqlClient` (migrated) and the topics' prefix from the environment. */
export const DomainLive = Layer.mergeAll(Products.Default, Orders.Default)

/**
 * commerce-service but the HTTP server: the API's handlers (`HttpApi.Api`) and the outbox relay,
 * with the topics created. Needs infrastructure only: `SqlClient` + `PgClient` (migrated with
 * `Migrations.all`), `Producer`, `Admin` and `Config`.
 */
export const layer = Layer.mergeAll(Http.layer.pipe(Layer.provide(DomainLive)), Workers.layer).pipe(
  Layer.provide(Topics.layer)
)
