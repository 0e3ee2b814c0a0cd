import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as Migrator from "@effect/sql/Migrator"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as String from "effect/String"
import * as UnansweredTimeout from "./internal/unansweredTimeout.ts"
import * as Migrations from "./Migrations.ts"

export const defaultUrl = "postgres://postgres@127.0.0.1:5432/kpipe"

/** The same server and credentials as `url`, another database on it. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const defaultAnswerTimeout = Duration.seconds(30)

/**
 * Runs `f` on one short-lived connection to the server's maintenance database, for work that
 * cannot run inside the target database (creating or dropping it).
 */
export const onServer = <A>(url: Redacted.Redacted, f: (sql: PgClient.PgClient) => Effect.Effect<A, SqlError>) =>
  PgClient.make({
    url: Redacted.make(withDatabase(Redacted.value(url), "postgres")),
    maxConnections: 1,
    connectTimeout: "3 seconds",
    stream: UnansweredTimeout.stream(Duration.toMillis(defaultAnswerTimeout))
  }).pipe(Effect.flatMap(f), Effect.scoped, Effect.provide(Reactivity.layer))

/**
 * A pool of its own, `maxConnections` strong, on the shared pool's database with its settings: for
 * statements that must run outside the caller's transaction while the caller holds a connection of
 * the shared pool. On the shared pool they could wait for good once every connection is held by a
 * transaction waiting on them.
 */
export const separatePool = (
  maxConnections: number
): Effect.Effect<PgClient.PgClient, SqlError, PgClient.PgClient | Scope.Scope> =>
  Effect.flatMap(PgClient.PgClient, (shared) => PgClient.make({ ...shared.config, maxConnections })).pipe(
    Effect.provide(Reactivity.layer)
  )

/** `DATABASE_URL` as given, or the local default. */
export const url: Config.Config<Redacted.Redacted> = Config.redacted("DATABASE_URL").pipe(
  Config.withDefault(Redacted.make(defaultUrl))
)

/**
 * How long a connection may wait for the server's first bytes after sending it something before it
 * is closed (`PG_ANSWER_TIMEOUT`): what ends a statement sent to a failed-over primary or into a
 * dropped route, which neither answers nor resets. A statement that legitimately runs longer without
 * a byte back (a lock wait, a migration building an index) fails at it, so it must exceed those.
 * A connection attempt the server does not accept (SYNs dropped) is abandoned after it too. Over TLS
 * (`sslmode` in `DATABASE_URL`) only that attempt is watched.
 */
export const answerTimeout: Config.Config<Duration.Duration> = Config.duration("PG_ANSWER_TIMEOUT").pipe(
  Config.withDefault(defaultAnswerTimeout),
  Config.validate({
    message: "PG_ANSWER_TIMEOUT must be at least 1 millisecond",
    validation: (timeout) => Duration.toMillis(timeout) >= 1
  }),
  Config.withDescription(
    "Closes a PostgreSQL connection that got no answer this long after it sent something, or that the server did not accept (a failover, a dropped route); above the longest lock wait or statement"
  )
)

/**
 * The pg pool every package shares. Columns are snake_case in SQL and camelCase in TypeScript.
 * `DATABASE_URL`, `PG_MAX_CONNECTIONS` (default 10), `PG_APPLICATION_NAME`, `PG_ANSWER_TIMEOUT` (30 s).
 */
export const layerConfig = (
  databaseUrl: Config.Config<Redacted.Redacted> = url
): Layer.Layer<PgClient.PgClient | SqlClient, ConfigError.ConfigError | SqlError> =>
  PgClient.layerConfig({
    url: databaseUrl,
    maxConnections: Config.integer("PG_MAX_CONNECTIONS").pipe(Config.withDefault(10)),
    applicationName: Config.string("PG_APPLICATION_NAME").pipe(Config.withDefault("kpipe")),
    stream: Config.map(answerTimeout, (timeout) => UnansweredTimeout.stream(Duration.toMillis(timeout))),
    transformQueryNames: Config.succeed(String.camelToSnake),
    transformResultNames: Config.succeed(String.snakeToCamel)
  })

export const layer: Layer.Layer<PgClient.PgClient | SqlClient, ConfigError.ConfigError | SqlError> = layerConfig()

const databaseName = (url: Redacted.Redacted) => decodeURIComponent(new URL(Redacted.value(url)).pathname.slice(1))

const isDuplicateDatabase = (error: SqlError) =>
  Predicate.hasProperty(error.cause, "code") && (error.cause.code === "42P04" || error.cause.code === "23505")

/** Creates the database `url` names when the server lacks it; says whether it did. Safe when processes race. */
export const ensureExists = (url: Redacted.Redacted): Effect.Effect<boolean, SqlError> =>
  onServer(url, (sql) =>
    Effect.gen(function*() {
      const name = databaseName(url)
      const found = yield* sql`SELECT 1 FROM pg_database WHERE datname = ${name}`
      if (found.length > 0) return false
      // Another process creating it at the same moment is as good as creating it here.
      return yield* sql`CREATE DATABASE ${sql(name)}`.pipe(
        Effect.as(true),
        Effect.catchIf(isDuplicateDatabase, () => Effect.succeed(false))
      )
    })).pipe(
      Effect.tap((created) => created ? Effect.logInfo(`Created database ${databaseName(url)}`) : Effect.void),
      Effect.withSpan("Database.ensureExists")
    )

/**
 * A service's own database: `DATABASE_URL` (default `defaultUrl`), created when missing, with
 * `migrations` applied in order before the pool is handed out.
 */
export const layerMigrated = (
  defaultUrl: string,
  migrations: ReadonlyArray<Migrations.MigrationsOptions>
): Layer.Layer<PgClient.PgClient | SqlClient, SqlError | ConfigError.ConfigError | Migrator.MigrationError> =>
  Layer.unwrapEffect(
    Effect.map(
      Config.redacted("DATABASE_URL").pipe(Config.withDefault(Redacted.make(defaultUrl))),
      (databaseUrl) => layerMigratedAt(databaseUrl, migrations)
    )
  )

/** The database at `url`, created when missing, with `migrations` applied in order before the pool is handed out. */
export const layerMigratedAt = (
  url: Redacted.Redacted,
  migrations: ReadonlyArray<Migrations.MigrationsOptions>
): Layer.Layer<PgClient.PgClient | SqlClient, SqlError | ConfigError.ConfigError | Migrator.MigrationError> =>
  Layer.unwrapEffect(
    Effect.as(ensureExists(url), Migrations.layerAll(migrations, layerConfig(Config.succeed(url))))
  )

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
    return Migrations.layerAll(
      migrations,
      layerConfig(Config.succeed(Redacted.make(withDatabase(Redacted.value(serverUrl), name))))
    )
  }))
