import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { MetricsApi } from "@kpipe/contracts/MetricsApi"
import { ServiceUnavailable } from "@kpipe/contracts/ServiceUnavailable"
import { AdminToken, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import { Config } from "./Config.ts"
import { Freshness } from "./Freshness.ts"
import { MetricsStore } from "./MetricsStore.ts"
import { Reconciliation } from "./Reconciliation.ts"

/** A row that does not decode (a figure past the contract's range) is a bug here: a 500 with its cause logged. */
const answered = <A, E, R>(self: Effect.Effect<A, E | ParseResult.ParseError, R>) =>
  self.pipe(
    Effect.catchIf(ParseResult.isParseError, (error) => Effect.die(error)),
    Unavailable.orServiceUnavailable("Product metrics")
  )

const MetricsLive = HttpApiBuilder.group(MetricsApi, "metrics", (handlers) =>
  Effect.gen(function*() {
    const store = yield* MetricsStore
    const freshness = yield* Freshness
    return handlers
      .handle("ranking", ({ urlParams }) =>
        answered(store.ranking(urlParams.by, urlParams.window ?? "day", urlParams.limit ?? 10)))
      .handle("productMetrics", ({ path }) =>
        answered(store.get(path.productId)))
      .handle("status", () => freshness.status())
  }))

const AdminLive = HttpApiBuilder.group(MetricsApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const reconciliation = yield* Reconciliation
    return handlers
      .handle("reconcile", () =>
        answered(reconciliation.run()).pipe(
          Effect.catchTag("CommerceUnavailable", (error) =>
            Effect.zipRight(
              Effect.logWarning("Reconciliation: commerce-service unavailable, answered 503", error),
              Effect.fail(new ServiceUnavailable({ message: "commerce-service's totals could not be read; retry." }))
            )),
          // A wrong token is a deployment fault: no retry will help, so it is said, and logged at Error.
          Effect.catchTag("CommerceUnauthorized", (error) =>
            Effect.zipRight(
              Effect.logError("Reconciliation: commerce-service refused COMMERCE_ADMIN_TOKEN, answered 503", error),
              Effect.fail(
                new ServiceUnavailable({
                  message:
                    "commerce-service refused metrics-service's COMMERCE_ADMIN_TOKEN (default: its ADMIN_TOKEN): " +
                    "set it to commerce-service's ADMIN_TOKEN; retrying will not help."
                })
              )
            ))
        ))
  }))

const adminAuth = Layer.unwrapEffect(Effect.map(Config, (config) => AdminToken.layer(config.adminToken)))

/** The implemented `MetricsApi` (`HttpApi.Api`); needs `MetricsStore`, `Freshness`, `Reconciliation` and `Config`. */
export const layer = HttpApiBuilder.api(MetricsApi).pipe(
  Layer.provide([MetricsLive, AdminLive.pipe(Layer.provide(adminAuth))])
)
