import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"

/** Admin and operations endpoints, of any service: one bearer token, `ADMIN_TOKEN`. */

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/**
 * `Authorization: Bearer <ADMIN_TOKEN>`; missing or wrong → 401 `Unauthorized`. Add it to a group
 * with `.middleware(AdminAuth)`; servers provide `@kpipe/service-kit` `AdminToken.layer`.
 */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("AdminAuth", {
  failure: Unauthorized,
  security: {
    adminToken: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "The service's ADMIN_TOKEN.")
    )
  }
}) {}
