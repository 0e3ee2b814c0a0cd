import * as Config from "effect/Config"

/** Which replica this process is (`REPLICA`, default 0): it picks the default port and tags the logs. */
export const replica: Config.Config<number> = Config.integer("REPLICA").pipe(
  Config.validate({ message: "REPLICA must be a non-negative integer", validation: (n) => n >= 0 }),
  Config.withDefault(0)
)

export const basePort = 3010
