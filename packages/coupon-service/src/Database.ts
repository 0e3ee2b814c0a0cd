import { Database } from "@kpipe/sql"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"
import * as Migrations from "./Migrations.ts"

/** coupon-service's own database (`DATABASE_URL`), created when missing and migrated (`Migrations.all`). */
export const layer = Layer.unwrapEffect(
  Effect.map(Config, (config) => Database.layerMigratedAt(config.databaseUrl, Migrations.all))
)
