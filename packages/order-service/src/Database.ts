import { Database } from "@kpipe/sql"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"
import * as Migrations from "./Migrations.ts"

/** order-service's own database (`DATABASE_URL`, default `kpipe_order`), created when missing and migrated. */
export const layer = Layer.unwrapEffect(
  Effect.map(Config, (config) => Database.layerMigratedAt(config.databaseUrl, Migrations.all))
)
