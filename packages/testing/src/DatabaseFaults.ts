import * as Command from "@effect/platform/Command"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Database } from "@kpipe/sql"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { readdirSync, readFileSync } from "node:fs"
import * as ServiceProcess from "./ServiceProcess.ts"

/**
 * Faults of one database on the shared server, made with the server's own means so that nothing
 * of the server's configuration changes: its sessions killed, or its connections refused for a while.
 */

/** Ends every session on `database` but the caller's (as a failover or an operator would); returns how many. */
export const terminateBackends = (url: Redacted.Redacted, database: string): Effect.Effect<number, SqlError> =>
  Database.onServer(url, (sql) =>
    sql<{ readonly terminated: boolean }>`
      SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
      WHERE datname = ${database} AND pid <> pg_backend_pid()`).pipe(
      Effect.map((rows) => rows.filter((row) => row.terminated).length),
      Effect.tap((count) => Effect.logInfo(`Terminated ${count} sessions on ${database}`))
    )

const refuse = (url: Redacted.Redacted, database: string) =>
  Database.onServer(url, (sql) => sql`ALTER DATABASE ${sql(database)} ALLOW_CONNECTIONS false`).pipe(
    Effect.zipRight(terminateBackends(url, database)),
    Effect.zipRight(Effect.logInfo(`${database} refuses connections`))
  )

/**
 * `database` refuses new connections and its open sessions are ended, until the scope closes (the
 * connections are allowed again whatever happens).
 */
export const refuseConnections = (
  url: Redacted.Redacted,
  database: string
): Effect.Effect<void, SqlError, Scope.Scope> =>
  Effect.acquireRelease(
    refuse(url, database),
    () =>
      Database.onServer(url, (sql) => sql`ALTER DATABASE ${sql(database)} ALLOW_CONNECTIONS true`).pipe(
        Effect.zipRight(Effect.logInfo(`${database} accepts connections again`)),
        Effect.orDie
      )
  ).pipe(Effect.asVoid)

const setReadOnly = (url: Redacted.Redacted, database: string, readOnly: boolean) =>
  Database.onServer(
    url,
    (sql) =>
      readOnly
        ? sql`ALTER DATABASE ${sql(database)} SET default_transaction_read_only = on`
        : sql`ALTER DATABASE ${sql(database)} RESET default_transaction_read_only`
  ).pipe(
    // A session keeps the setting it started with: they are all ended, to start again with the new one.
    Effect.zipRight(terminateBackends(url, database)),
    Effect.zipRight(Effect.logInfo(`${database} ${readOnly ? "is read-only" : "takes writes again"}`))
  )

/**
 * `database` answers, but refuses every write (SQLSTATE 25006), as a primary demoted by a failover or
 * a standby does to the sessions still connected to it, until the scope closes (writes are taken
 * again whatever happens). Its open sessions are ended both times.
 */
export const readOnly = (
  url: Redacted.Redacted,
  database: string
): Effect.Effect<void, SqlError, Scope.Scope> =>
  Effect.acquireRelease(setReadOnly(url, database, true), () => Effect.orDie(setReadOnly(url, database, false))).pipe(
    Effect.asVoid
  )

/**
 * The database of the `SqlClient` in context goes away for good, as an outage would: new connections
 * refused, open ones ended. Meant for a test's own database (`Database.layerTest`), which is dropped
 * at the end all the same.
 */
export const cutOff: Effect.Effect<void, SqlError | ConfigError.ConfigError, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ readonly name: string }>`SELECT current_database() AS name`
  yield* refuse(yield* Database.url, row!.name)
})

export class DatabaseFaultsError extends Data.TaggedError("DatabaseFaultsError")<{
  readonly command: string
  readonly message: string
}> {}

/**
 * A PostgreSQL cluster of one's own (Debian's `pg_createcluster`, trust authentication on
 * 127.0.0.1, a free port), for faults of the server itself: the shared server on 5432 is never
 * stopped or restarted.
 */
export interface Cluster {
  readonly version: string
  readonly name: string
  readonly port: number
  /** `postgres://postgres@127.0.0.1:<port>/postgres`: a `DATABASE_URL` for this server. */
  readonly url: Redacted.Redacted
  /** `pg_ctlcluster restart` (fast shutdown: sessions ended, then started again). */
  readonly restart: Effect.Effect<void, DatabaseFaultsError>
  /** Fast shutdown: every session ended, new connections refused (nothing listens on the port). */
  readonly stop: Effect.Effect<void, DatabaseFaultsError>
  readonly start: Effect.Effect<void, DatabaseFaultsError>
  /** Stopped now; started again when the scope closes, whatever happened meanwhile. */
  readonly down: Effect.Effect<void, DatabaseFaultsError, Scope.Scope>
  /**
   * SIGSTOP to the server and every process it started, SIGCONT when the scope closes: sessions stay
   * open and what they are sent waits in their sockets; new connections wait in the listen queue. A
   * host or VM that hangs, or a server stalled on its storage.
   */
  readonly frozen: Effect.Effect<void, DatabaseFaultsError, Scope.Scope>
}

const text = <E>(stream: Stream.Stream<Uint8Array, E>) => stream.pipe(Stream.decodeText(), Stream.mkString)

const run = (command: string, ...args: ReadonlyArray<string>) =>
  Command.make(command, ...args).pipe(
    Command.start,
    Effect.flatMap((child) =>
      Effect.all([text(child.stdout), text(child.stderr), child.exitCode], { concurrency: "unbounded" })
    ),
    Effect.scoped,
    Effect.mapError((error) =>
      new DatabaseFaultsError({
        command,
        message: `${command}: ${error.message} (needs Debian's postgresql-common and the rights of root or postgres)`
      })
    ),
    Effect.filterOrFail(
      ([, , code]) => code === 0,
      ([out, err, code]) =>
        new DatabaseFaultsError({
          command,
          message: `${command} ${args.join(" ")} exited with ${code}: ${(out + err).trim()}`
        })
    ),
    Effect.asVoid,
    Effect.provide(ServiceProcess.executorLayer)
  )

/** The newest PostgreSQL installed under /usr/lib/postgresql (Debian's layout). */
const installedVersion = Effect.try({
  try: () => {
    const versions = readdirSync("/usr/lib/postgresql").filter((name) => /^\d+$/.test(name))
    if (versions.length === 0) throw new Error("no version under /usr/lib/postgresql")
    return versions.sort((a, b) => Number(b) - Number(a))[0]!
  },
  catch: (cause) => new DatabaseFaultsError({ command: "pg_createcluster", message: String(cause) })
})

/**
 * Creates and starts a cluster of one's own; when the scope closes it is stopped and dropped with
 * its data. Takes a few seconds (initdb).
 */
export const cluster: Effect.Effect<Cluster, DatabaseFaultsError, Scope.Scope> = Effect.gen(function*() {
  const version = yield* installedVersion
  const port = yield* ServiceProcess.freePort
  const name = `kpipe_faults_${port}`
  const ctl = (...args: ReadonlyArray<string>) =>
    run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, ...args)
  yield* Effect.acquireRelease(
    run(
      "pg_createcluster",
      version,
      name,
      "--port",
      String(port),
      "--start-conf",
      "manual",
      "--",
      "--auth-local=trust",
      "--auth-host=trust"
    ),
    () => run("pg_dropcluster", "--stop", version, name).pipe(Effect.ignoreLogged)
  )
  yield* ctl("start")
  const stop = ctl("stop").pipe(Effect.zipRight(Effect.logInfo(`PostgreSQL ${name} stopped`)))
  // The postmaster's pid is the first line of postmaster.pid in the data directory (Debian's layout).
  const signalAll = (signal: NodeJS.Signals) =>
    Effect.try({
      try: () => {
        const postmaster = Number(
          readFileSync(`/var/lib/postgresql/${version}/${name}/postmaster.pid`, "utf8").split("\n")[0]
        )
        const children = readFileSync(`/proc/${postmaster}/task/${postmaster}/children`, "utf8")
          .split(" ").filter((pid) => pid.trim() !== "").map(Number)
        // The postmaster first when stopping (no new children), last when continuing.
        const order = signal === "SIGSTOP" ? [postmaster, ...children] : [...children, postmaster]
        for (const pid of order) process.kill(pid, signal)
        return order.length
      },
      catch: (cause) => new DatabaseFaultsError({ command: `kill -${signal}`, message: String(cause) })
    }).pipe(Effect.tap((count) => Effect.logInfo(`PostgreSQL ${name}: ${signal} to ${count} processes`)))
  const start = ctl("start").pipe(Effect.zipRight(Effect.logInfo(`PostgreSQL ${name} started`)))
  return {
    version,
    name,
    port,
    url: Redacted.make(`postgres://postgres@127.0.0.1:${port}/postgres`),
    restart: ctl("restart").pipe(Effect.zipRight(Effect.logInfo(`PostgreSQL ${name} restarted`))),
    stop,
    start,
    down: Effect.acquireRelease(stop, () => Effect.orDie(start)),
    frozen: Effect.asVoid(Effect.acquireRelease(signalAll("SIGSTOP"), () => Effect.orDie(signalAll("SIGCONT"))))
  } satisfies Cluster
})
