import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { AccountApi, AccountNotFound, Health, LoginStats as Stats } from "@kpipe/contracts/AccountApi"
import { GatewayUser, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Config } from "./Config.ts"
import { LoginStats } from "./LoginStats.ts"

const AccountsLive = HttpApiBuilder.group(AccountApi, "accounts", (handlers) =>
  Effect.gen(function*() {
    const stats = yield* LoginStats
    return handlers.handle("getLogins", ({ path }) =>
      GatewayUser.requireOwner(path.accountId, "the login statistics of account").pipe(
        Effect.zipRight(stats.get(path.accountId)),
        Effect.flatMap(Option.match({
          onNone: () =>
            Effect.fail(new AccountNotFound({ accountId: path.accountId })),
          onSome: (found) => Effect.succeed(new Stats(found))
        })),
        Unavailable.orServiceUnavailable("Login statistics")
      ))
  }))

const HealthLive = HttpApiBuilder.group(AccountApi, "health", (handlers) =>
  Effect.gen(function*() {
    const { replica } = yield* Config
    return handlers.handle("health", () =>
      Effect.succeed(new Health({ status: "ok", service: "account-service", replica })))
  }))

/**
 * `AccountApi` implemented on `LoginStats`: domain results mapped to the contract's (an account's
 * statistics for the gateway's user of that id only), and the replica's health.
 */
export const layer = HttpApiBuilder.api(AccountApi).pipe(
  Layer.provide(Layer.mergeAll(AccountsLive, HealthLive)),
  Layer.provide(GatewayUser.layer)
)
