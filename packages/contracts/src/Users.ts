import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { type Ids } from "@kpipe/events"
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"

/** Who is asking, for every user-facing service: the user the API gateway vouched for, and the answers about it. */

export class MissingUserId extends Schema.TaggedError<MissingUserId>()(
  "MissingUserId",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

export class InvalidUserId extends Schema.TaggedError<InvalidUserId>()(
  "InvalidUserId",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The caller is known, but the resource is another user's (or another member's). */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {}

/** The requesting user, as the gateway vouched for it. */
export class CurrentUser extends Context.Tag("@kpipe/contracts/CurrentUser")<CurrentUser, Ids.UserId>() {}

export const userIdHeader = "X-User-Id"

/**
 * The gateway authenticates the user and forwards the id in `X-User-Id`; the service trusts it
 * (it is never exposed without the gateway) and only checks its shape: absent 401, malformed 400.
 * Servers provide `@kpipe/service-kit` `GatewayUser.layer`.
 */
export class UserIdentity extends HttpApiMiddleware.Tag<UserIdentity>()("UserIdentity", {
  failure: Schema.Union(MissingUserId, InvalidUserId),
  provides: CurrentUser,
  security: {
    gateway: HttpApiSecurity.apiKey({ in: "header", key: userIdHeader }).pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "The authenticated user's id (a positive integer), set by the API gateway."
      )
    )
  }
}) {}
