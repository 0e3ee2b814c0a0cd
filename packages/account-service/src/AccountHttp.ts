import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { AccountApi, AccountNotFound, Health } from "@kpipe/contracts/AccountApi"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { LoginStats } from "./LoginStats.ts"
import * as Replica from "./Replica.ts"

const AccountsLive = HttpApiBuilder.group(AccountApi, "accounts", (handlers) =>
  Effect.gen(function*() {
    const stats = yield* LoginStats
    return handlers.handle("getLogins", ({ path }) =>
      stats.get(path.accountId).pipe(
        Effect.orDie,
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new AccountNotFound({ accountId: path.accountId })),
          onSome: (found) => Effect.succeed(found)
        }))
      ))
  }))

const HealthLive = HttpApiBuilder.group(AccountApi, "health", (handlers) =>
  Effect.gen(function*() {
    const replica = yield* Replica.replica
    return handlers.handle("health", () =>
      Effect.succeed(new Health({ status: "ok", service: "account-service", replica })))
  }))

/** The `AccountApi` implementation, to serve with `HttpApiBuilder.serve()`. */
export const ApiLive = HttpApiBuilder.api(AccountApi).pipe(Layer.provide(Layer.mergeAll(AccountsLive, HealthLive)))
