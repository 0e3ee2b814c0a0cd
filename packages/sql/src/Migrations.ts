import * as NodeContext from "@effect/platform-node/NodeContext"
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as PgMigrator from "@effect/sql-pg/PgMigrator"
import type * as Migrator from "@effect/sql/Migrator"
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"

export interface MigrationsOptions {
  readonly loader: Migrator.Loader<SqlClient>
  /**
   * Each package that owns tables keeps its own history table, so packages embedded in one app
   * number their migrations independently.
   */
  readonly table: string
}

/** Applies pending migrations (all in one transaction, under a lock) when the Layer is built. */
export const layer = (
  options: MigrationsOptions
): Layer.Layer<never, Migrator.MigrationError | SqlError, PgClient.PgClient | SqlClient> =>
  PgMigrator.layer({ loader: options.loader, table: options.table }).pipe(Layer.provide(NodeContext.layer))

// Processes that start together race to create a migration history table (the Migrator locks it
// only once it exists); the loser tries again and then finds the work done.
const creationRace = Schedule.spaced("250 millis").pipe(Schedule.intersect(Schedule.recurs(8)))

/** Applies several packages' migrations in order, on top of `client`, whose outputs it keeps. */
export const layerAll = <E, R>(
  migrations: ReadonlyArray<MigrationsOptions>,
  client: Layer.Layer<PgClient.PgClient | SqlClient, E, R>
): Layer.Layer<PgClient.PgClient | SqlClient, E | Migrator.MigrationError | SqlError, R> =>
  migrations.reduce(
    (acc: Layer.Layer<PgClient.PgClient | SqlClient, E | Migrator.MigrationError | SqlError, R>, migration) =>
      Layer.provideMerge(layer(migration).pipe(Layer.retry(creationRace)), acc),
    client
  )
