import * as Config from "effect/Config"

/** Which replica of a service this process is (`REPLICA`, default 0): it picks the default port and tags the logs. */
export const replica: Config.Config<number> = Config.integer("REPLICA").pipe(
  Config.validate({ message: "REPLICA must be a non-negative integer", validation: (n) => n >= 0 }),
  Config.withDefault(0),
  Config.withDescription("Which replica this process is (0, 1, …): default port base + REPLICA, and a log annotation")
)

/** The replica's default HTTP port: `base + REPLICA`. */
export const port = (base: number): Config.Config<number> => Config.map(replica, (n) => base + n)
