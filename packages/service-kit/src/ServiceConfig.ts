import * as Config from "effect/Config"
import * as Redacted from "effect/Redacted"

/** `PORT`, or `fallback` when unset (a number, or e.g. `Replica.port(base)`); 0 picks a free port. */
export const port = (fallback: number | Config.Config<number>): Config.Config<number> =>
  Config.integer("PORT").pipe(
    Config.orElse(() => typeof fallback === "number" ? Config.succeed(fallback) : fallback),
    Config.validate({ message: "Expected a port, 0 to 65535", validation: (port) => port >= 0 && port <= 65535 }),
    Config.withDescription("HTTP port on 127.0.0.1 (0: any free port; the address is logged)")
  )

/** `DATABASE_URL`, by default the local server's database `database` (created when missing). */
export const databaseUrl = (database: string): Config.Config<Redacted.Redacted> =>
  Config.redacted("DATABASE_URL").pipe(
    Config.withDefault(Redacted.make(`postgres://postgres@127.0.0.1:5432/${database}`)),
    Config.withDescription(`The service's own PostgreSQL database (default: ${database} on the local server)`)
  )
