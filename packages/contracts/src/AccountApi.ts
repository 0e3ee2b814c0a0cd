import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import * as Schema from "effect/Schema"
import * as Decimal from "./Decimal.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { Forbidden, UserIdentity } from "./Users.ts"

/** The contract of account-service. */

export class LoginStats extends Schema.Class<LoginStats>("LoginStats")({
  accountId: Ids.AccountId,
  /** Login events applied for the account; each event counts once, however often it is delivered. */
  loginCount: Schema.Int.pipe(Schema.positive()),
  lastLoginAt: Schema.DateTimeUtc,
  lastSessionId: Ids.SessionId,
  updatedAt: Schema.DateTimeUtc
}) {}

export class Health extends Schema.Class<Health>("Health")({
  status: Schema.Literal("ok"),
  service: Schema.Literal("account-service"),
  /** Which replica answered (the `REPLICA` env). */
  replica: Schema.Int.pipe(Schema.nonNegative())
}) {}

export class AccountNotFound extends Schema.TaggedError<AccountNotFound>()(
  "AccountNotFound",
  { accountId: Ids.AccountId },
  HttpApiSchema.annotations({ status: 404 })
) {}

const accountPath = Schema.Struct({ accountId: Decimal.FromString.pipe(Schema.compose(Ids.AccountId)) })

export class AccountsGroup extends HttpApiGroup.make("accounts").add(
  HttpApiEndpoint.get("getLogins", "/api/accounts/:accountId/logins")
    .setPath(accountPath)
    .addSuccess(LoginStats)
    .addError(AccountNotFound)
    .annotate(
      OpenApi.Description,
      "Login statistics of the gateway user's own account (X-User-Id must be the account), from the login events applied so far."
    )
).addError(ServiceUnavailable).addError(Forbidden).middleware(UserIdentity) {}

export class HealthGroup extends HttpApiGroup.make("health").add(
  HttpApiEndpoint.get("health", "/health").addSuccess(Health)
) {}

export class AccountApi extends HttpApi.make("account-service")
  .add(AccountsGroup)
  .add(HealthGroup)
  .annotate(OpenApi.Title, "account-service")
{}
