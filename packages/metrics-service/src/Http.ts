import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { MetricsApi } from "@kpipe/contracts/MetricsApi"
import { ServiceUnavailable } from "@kpipe/contracts/ServiceUnavailable"
import { Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Freshness } from "./Freshness.ts"
import { MetricsStore } from "./MetricsStore.ts"
import { Reconciliation } from "./Reconciliation.ts"

const MetricsLive = HttpApiBuilder.group(MetricsApi, "metrics", (handlers) =>
  Effect.gen(function*() {
    const store = yield* MetricsStore
    const freshness = yield* Freshness
    const reconciliation = yield* Reconciliation
    const answered = Unavailable.orServiceUnavailable("Product metrics")
    return handlers
      .handle("ranking", ({ urlParams }) =>
        answered(store.ranking(urlParams.by, urlParams.window ?? "day", urlParams.limit ?? 10)))
      .handle("productMetrics", ({ path }) =>
        answered(store.get(path.productId)))
      .handle("status", () => freshness.status())
      .handle("reconcile", () =>
        answered(reconciliation.run()).pipe(
          Effect.catchTag("CommerceUnavailable", (error) =>
            Effect.zipRight(
              Effect.logWarning("Reconciliation: commerce-service unavailable, answered 503", error),
              Effect.fail(new ServiceUnavailable({ message: "commerce-service's totals could not be read; retry." }))
            ))
        ))
  }))

/** The implemented `MetricsApi` (`HttpApi.Api`); needs `MetricsStore`, `Freshness` and `Reconciliation`. */
export const layer = HttpApiBuilder.api(MetricsApi).pipe(Layer.provide(MetricsLive))
