import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as String from "effect/String"

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
