import { Database, Migrations as SqlMigrations } from "@kpipe/sql"
import * as EffectConfig from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"
import * as Migrations from "./Migrations.ts"

/** coupon-service's own database (`DATABASE_URL`), created when missing and migrated (`Migrations.all`). */
export const layer = Layer.unwrapEffect(Effect.gen(function*() {
  const { databaseUrl } = yield* Config
  yield* Database.ensureExists(databaseUrl)
  return SqlMigrations.layerAll(Migrations.all, Database.layerConfig(EffectConfig.succeed(databaseUrl)))
}))
