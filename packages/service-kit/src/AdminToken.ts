import { AdminAuth, Unauthorized } from "@kpipe/contracts/Admin"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"

/**
 * `KPIPE_ENV=development` (what `pnpm run services` sets): a laptop, where a missing secret may be
 * made up. Anything else, or unset, is a deployment.
 */
export const developmentMode: Config.Config<boolean> = Config.literal("development", "production")("KPIPE_ENV").pipe(
  Config.withDefault("production" as const),
  Config.map((env) => env === "development"),
  Config.withDescription("development: secrets may be missing (a random one is made up); production otherwise")
)

/**
 * `ADMIN_TOKEN`, the bearer token of every admin and operations endpoint. Required, unless in
 * development mode, where a missing one is a random token nobody knows (the admin endpoints refuse
 * everyone) rather than a public default.
 */
export const config: Config.Config<Redacted.Redacted> = Config.all([
  Config.option(Config.redacted("ADMIN_TOKEN")),
  developmentMode
]).pipe(
  Config.mapOrFail(([token, development]) => {
    if (Option.isSome(token) && Redacted.value(token.value) !== "") return Either.right(token.value)
    return development
      ? Either.right(Redacted.make(randomBytes(32).toString("base64url")))
      : Either.left(
        ConfigError.MissingData(
          ["ADMIN_TOKEN"],
          "ADMIN_TOKEN is required (the admin endpoints' bearer token); only KPIPE_ENV=development runs without one"
        )
      )
  }),
  Config.withDescription("Bearer token of the admin and operations endpoints (required outside KPIPE_ENV=development)")
)

const digest = (text: string) => createHash("sha256").update(text).digest()

/**
 * Whether `given` is `expected`, in time independent of where they differ: both are hashed first,
 * so `timingSafeEqual` compares equal lengths whatever was sent.
 */
export const matches = (expected: Redacted.Redacted, given: Redacted.Redacted): boolean =>
  timingSafeEqual(digest(Redacted.value(given)), digest(Redacted.value(expected)))

/** The contracts' `AdminAuth` middleware checking against `token`. */
export const make = (token: Redacted.Redacted): AdminAuth["Type"] =>
  AdminAuth.of({
    adminToken: (given) => {
      if (Redacted.value(given) === "") {
        return Effect.fail(new Unauthorized({ message: "Missing admin token (Authorization: Bearer …)." }))
      }
      return matches(token, given) ? Effect.void : Effect.fail(new Unauthorized({ message: "Wrong admin token." }))
    }
  })

/** `AdminAuth` with a token the service already read (its `Config`). */
export const layer = (token: Redacted.Redacted): Layer.Layer<AdminAuth> => Layer.succeed(AdminAuth, make(token))

/** `AdminAuth` with `ADMIN_TOKEN` (`config`): fails to build, so the service to start, without one outside development. */
export const layerFromEnv: Layer.Layer<AdminAuth, ConfigError.ConfigError> = Layer.effect(
  AdminAuth,
  Effect.map(config, make)
)
