import type { PgClient } from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Admin, Consumer } from "@kpipe/kafka"
import type { OutboxRelay } from "@kpipe/pipeline"
import * as Layer from "effect/Layer"
import * as Health from "./Health.ts"
import * as Prometheus from "./Prometheus.ts"

/**
 * What an operator sees of a service, for `HttpServe.layer` to serve: `Health` with the database
 * and broker checks (add others with `Health.layerCheck`), and `Prometheus`. Provide it to the
 * layer holding both the server and the workers, so every consumer and relay built there reports
 * to it.
 */
export const layer = (
  service: string
): Layer.Layer<
  Health.Health | Prometheus.Prometheus | Consumer.Observer | OutboxRelay.Observer,
  SqlError,
  PgClient | Admin.Admin
> => {
  const health = Health.layer(service)
  return Layer.mergeAll(Health.database, Health.broker, Prometheus.layer(service)).pipe(Layer.provideMerge(health))
}
