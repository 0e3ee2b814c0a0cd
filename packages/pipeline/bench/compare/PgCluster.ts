// A PostgreSQL cluster of the bench's own (Debian's pg_createcluster), made with wal_level=logical
// for Debezium and dropped at the end, so the shared server on 5432 is never reconfigured. kpipe runs
// on it too: both systems get the same server and settings.
import * as Command from "@effect/platform/Command"
import { ServiceProcess } from "@kpipe/devtools"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { writeFileSync } from "node:fs"

export class PgClusterError extends Data.TaggedError("PgClusterError")<{ readonly message: string }> {}

const version = "15"
/** One cluster per bench process, so two developers' runs never drop each other's. */
const prefix = "kpipe_bench_"
const name = `${prefix}${process.pid}`

const exec = (...args: [string, ...Array<string>]) =>
  Command.make(...args).pipe(
    Command.string,
    Effect.provide(ServiceProcess.executorLayer),
    Effect.mapError((error) => new PgClusterError({ message: `${args.join(" ")}: ${error.message}` }))
  )

/** `pg_ctlcluster` and friends report failure by exit code; Command.string does not, so check the status. */
const run = (...args: [string, ...Array<string>]) =>
  Command.make(...args).pipe(
    Command.exitCode,
    Effect.provide(ServiceProcess.executorLayer),
    Effect.mapError((error) => new PgClusterError({ message: `${args.join(" ")}: ${error.message}` })),
    Effect.filterOrFail(
      (code) => code === 0,
      (code) => new PgClusterError({ message: `${args.join(" ")} exited with ${code}` })
    )
  )

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Clusters of bench processes that are gone (killed before they could drop theirs). */
const orphans = Effect.map(exec("pg_lsclusters", "--no-header"), (out) =>
  out.split("\n").flatMap((line) => {
    const [v, n = ""] = line.trim().split(/\s+/)
    return v === version && n.startsWith(prefix) && !alive(Number(n.slice(prefix.length))) ? [n] : []
  }))

const drop = (cluster: string) =>
  Effect.zipRight(
    run("pg_ctlcluster", version, cluster, "stop", "--mode", "immediate").pipe(Effect.ignore),
    run("pg_dropcluster", version, cluster)
  )

/**
 * Makes the cluster on a free port with trust authentication and logical decoding, starts it, and
 * stops and drops it when the scope closes. Clusters left by killed runs are dropped first.
 */
export const make = Effect.acquireRelease(
  Effect.gen(function*() {
    yield* Effect.forEach(yield* orphans, drop, { discard: true })
    const port = yield* ServiceProcess.freePort
    yield* run(
      "pg_createcluster",
      version,
      name,
      "--port",
      String(port),
      "-o",
      "wal_level=logical",
      "-o",
      "max_replication_slots=4",
      "-o",
      "max_wal_senders=4",
      "-o",
      "max_connections=100",
      // Latency runs read each appending transaction's commit time from the server.
      "-o",
      "track_commit_timestamp=on"
    )
    const configure = Effect.sync(() =>
      writeFileSync(
        `/etc/postgresql/${version}/${name}/pg_hba.conf`,
        [
          "# Written by the kpipe compare bench: a throwaway cluster, trust for local connections only.",
          "local all all trust",
          "local replication all trust",
          "host all all 127.0.0.1/32 trust",
          "host replication all 127.0.0.1/32 trust",
          ""
        ].join("\n")
      )
    )
    // Once made, a failure to configure or start it must not leave it behind.
    yield* Effect.zipRight(configure, run("pg_ctlcluster", version, name, "start")).pipe(
      Effect.onError(() => drop(name).pipe(Effect.ignore))
    )
    return { port, url: `postgres://postgres@127.0.0.1:${port}/postgres`, name: `${version}/${name}` }
  }),
  () => drop(name).pipe(Effect.ignoreLogged)
)

/** The same cluster, another database. */
export const databaseUrl = (cluster: { readonly port: number }, database: string) =>
  `postgres://postgres@127.0.0.1:${cluster.port}/${database}`
