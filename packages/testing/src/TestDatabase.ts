import type * as PgClient from "@effect/sql-pg/PgClient"
import type * as Migrator from "@effect/sql/Migrator"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Database, Migrations } from "@kpipe/sql"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

export interface TestDatabaseOptions {
  readonly migrations?: Migrations.MigrationsOptions | ReadonlyArray<Migrations.MigrationsOptions> | undefined
}

/**
 * A database of its own on the `DATABASE_URL` server, created empty, migrated, and dropped when
 * the Layer is released, so test runs never see each other's rows.
 */
export const layer = (
  options: TestDatabaseOptions = {}
): Layer.Layer<
  PgClient.PgClient | SqlClient,
  SqlError | ConfigError.ConfigError | Migrator.MigrationError
> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const url = yield* Database.url
    const name = `kpipe_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
    yield* Effect.acquireRelease(
      Database.onServer(url, (sql) => sql`CREATE DATABASE ${sql(name)}`),
      () =>
        Database.onServer(url, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(
          Effect.ignoreLogged
        )
    )
    const client = Database.layerConfig(Config.succeed(Redacted.make(Database.withDatabase(Redacted.value(url), name))))
    const migrations = options.migrations === undefined
      ? []
      : Array.isArray(options.migrations)
      ? options.migrations as ReadonlyArray<Migrations.MigrationsOptions>
      : [options.migrations as Migrations.MigrationsOptions]
    return migrations.reduce<
      Layer.Layer<PgClient.PgClient | SqlClient, SqlError | ConfigError.ConfigError | Migrator.MigrationError>
    >(
      (acc, migration) => Layer.provideMerge(Migrations.layer(migration), acc),
      client
    )
  }))
