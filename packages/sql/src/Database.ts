import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as Migrator from "@effect/sql/Migrator"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as String from "effect/String"
import * as Migrations from "./Migrations.ts"

export const defaultUrl = "postgres://postgres@127.0.0.1:5432/kpipe"

/** The same server and credentials as `url`, another database on it. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/**
 * Runs `f` on one short-lived connection to the server's maintenance database, for work that
 * cannot run inside the target database (creating or dropping it).
 */
export const onServer = <A>(url: Redacted.Redacted, f: (sql: PgClient.PgClient) => Effect.Effect<A, SqlError>) =>
  PgClient.make({
    url: Redacted.make(withDatabase(Redacted.value(url), "postgres")),
    maxConnections: 1,
    connectTimeout: "3 seconds"
  }).pipe(Effect.flatMap(f), Effect.scoped, Effect.provide(Reactivity.layer))

/** `DATABASE_URL` as given, or the local default. */
export const url: Config.Config<Redacted.Redacted> = Config.redacted("DATABASE_URL").pipe(
  Config.withDefault(Redacted.make(defaultUrl))
)

/**
 * The pg pool every package shares. Columns are snake_case in SQL and camelCase in TypeScript.
 * `DATABASE_URL`, `PG_MAX_CONNECTIONS` (default 10), `PG_APPLICATION_NAME`.
 */
export const layerConfig = (
  databaseUrl: Config.Config<Redacted.Redacted> = url
): Layer.Layer<PgClient.PgClient | SqlClient, ConfigError.ConfigError | SqlError> =>
  PgClient.layerConfig({
    url: databaseUrl,
    maxConnections: Config.integer("PG_MAX_CONNECTIONS").pipe(Config.withDefault(10)),
    applicationName: Config.string("PG_APPLICATION_NAME").pipe(Config.withDefault("kpipe")),
    transformQueryNames: Config.succeed(String.camelToSnake),
    transformResultNames: Config.succeed(String.snakeToCamel)
  })

export const layer: Layer.Layer<PgClient.PgClient | SqlClient, ConfigError.ConfigError | SqlError> = layerConfig()

/**
 * For tests: a database of its own on the `DATABASE_URL` server, created empty, migrated in the
 * given order, and dropped when the Layer is released, so runs never see each other's rows.
 */
export const layerTest = (
  migrations: ReadonlyArray<Migrations.MigrationsOptions> = []
): Layer.Layer<PgClient.PgClient | SqlClient, SqlError | ConfigError.ConfigError | Migrator.MigrationError> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const serverUrl = yield* url
    const name = `kpipe_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
    yield* Effect.acquireRelease(
      onServer(serverUrl, (sql) => sql`CREATE DATABASE ${sql(name)}`),
      () =>
        onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(Effect.ignoreLogged)
    )
    const client = layerConfig(Config.succeed(Redacted.make(withDatabase(Redacted.value(serverUrl), name))))
    return migrations.reduce(
      (
        acc: Layer.Layer<PgClient.PgClient | SqlClient, SqlError | ConfigError.ConfigError | Migrator.MigrationError>,
        migration
      ) => Layer.provideMerge(Migrations.layer(migration), acc),
      client
    )
  }))
