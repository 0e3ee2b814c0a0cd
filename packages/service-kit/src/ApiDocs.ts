import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as Effect from "effect/Effect"

/**
 * The Swagger UI page of the served HttpApi at `path`, the page `HttpApiSwagger.layer` serves, with
 * Swagger's 2 MB script loaded on the first request instead of at start. Loaded eagerly it is held
 * as the module's source, the string and the built page (~8 MB of heap in every process, most of
 * which never serves its docs).
 */
export const layer = (options?: { readonly path?: `/${string}` | undefined }) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function*() {
      const { api } = yield* HttpApi.Api
      const path = options?.path ?? "/docs"
      const page = Effect.tryPromise(() =>
        Promise.all([import("@effect/platform/HttpApiSwagger"), import("@effect/platform/HttpLayerRouter")])
      ).pipe(
        Effect.flatMap(([Swagger, LayerRouter]) =>
          LayerRouter.toHttpEffect(Swagger.layerHttpLayerRouter({ api, path }))
        ),
        Effect.flatten,
        Effect.scoped,
        Effect.orDie
      )
      yield* router.get(path, page)
    })
  )
