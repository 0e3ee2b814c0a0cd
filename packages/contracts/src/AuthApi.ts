import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Ids } from "@kpipe/events"
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import * as Decimal from "./Decimal.ts"
import { JsonBody } from "./JsonBody.ts"
import { MemberGone, MemberNotFound, MemberStatus } from "./Members.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { line, noControlCharacters } from "./Text.ts"
import { Forbidden } from "./Users.ts"

/** The contract of auth-service; d-day-service's fallback client is derived from it. */

export const Email = Schema.String.pipe(
  Schema.trimmed(),
  Schema.maxLength(254),
  Schema.pattern(/^[^\s@]+@[^\s@]+\.[^\s@]+$/),
  noControlCharacters,
  Schema.annotations({ description: "An e-mail address" })
)

export const Nickname = line(30)

export class Member extends Schema.Class<Member>("Member")({
  memberId: Ids.MemberId,
  provider: Schema.String,
  subject: Schema.String,
  // What is stored, read back: a nickname or e-mail set before `Nickname` and `Email` refused
  // control characters still reads (and d-day-service's fallback fetch of that member still decodes).
  nickname: Schema.String,
  email: Schema.optionalWith(Schema.String, { exact: true }),
  status: MemberStatus,
  createdAt: Schema.DateTimeUtc,
  /** When the member last changed; d-day-service uses it to ignore stale events. */
  updatedAt: Schema.DateTimeUtc,
  deletedAt: Schema.optionalWith(Schema.DateTimeUtc, { exact: true })
}) {}

export class SignInRequest extends Schema.Class<SignInRequest>("SignInRequest")({
  /** The OAuth provider, e.g. "google". */
  provider: Schema.String.pipe(Schema.pattern(/^[a-z][a-z0-9-]{1,31}$/)),
  /** The provider's subject id of the user. */
  subject: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255), noControlCharacters),
  nickname: Nickname,
  email: Schema.optionalWith(Email, { exact: true })
}) {}

/** A member's credential: `Authorization: Bearer <token>` on the member's own updates, deletion and logins. */
export class SessionToken extends Schema.Class<SessionToken>("SessionToken")({
  /** Random, stored only as a hash; shown once, at sign-in. */
  token: Schema.Redacted(Schema.String),
  expiresAt: Schema.DateTimeUtc
}) {}

export class SignInResponse extends Schema.Class<SignInResponse>("SignInResponse")({
  member: Member,
  /** True when this sign-in created the member (and a MemberCreated event). */
  created: Schema.Boolean,
  session: SessionToken
}) {}

export class UpdateProfileRequest extends Schema.Class<UpdateProfileRequest>("UpdateProfileRequest")({
  nickname: Schema.optionalWith(Nickname, { exact: true }),
  email: Schema.optionalWith(Email, { exact: true })
}) {}

export class LoginResponse extends Schema.Class<LoginResponse>("LoginResponse")({
  memberId: Ids.MemberId,
  sessionId: Ids.SessionId,
  loggedInAt: Schema.DateTimeUtc
}) {}

export class NothingToUpdate extends Schema.TaggedError<NothingToUpdate>()(
  "NothingToUpdate",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** No session token, or one that is unknown or expired. */
export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()(
  "Unauthenticated",
  { reason: Schema.Literal("Missing", "Invalid", "Expired"), message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** The member whose session token the request carries. */
export class CurrentMember extends Context.Tag("@kpipe/contracts/CurrentMember")<CurrentMember, Ids.MemberId>() {}

/**
 * `Authorization: Bearer <session token>` from sign-in: missing, unknown or expired → 401
 * `Unauthenticated`; the handler answers 403 `Forbidden` when the path names another member.
 */
export class MemberSession extends HttpApiMiddleware.Tag<MemberSession>()("MemberSession", {
  failure: Schema.Union(Unauthenticated, ServiceUnavailable),
  provides: CurrentMember,
  security: {
    sessionToken: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "The session token the member's sign-in returned.")
    )
  }
}) {}

const memberPath = Schema.Struct({ memberId: Decimal.FromString.pipe(Schema.compose(Ids.MemberId)) })

export class MembersGroup extends HttpApiGroup.make("members")
  .add(
    HttpApiEndpoint.post("signIn", "/api/auth/sign-in")
      .setPayload(SignInRequest)
      .addSuccess(SignInResponse)
      .annotate(
        OpenApi.Description,
        "OAuth sign-in: creates the member on the first sign-in of a provider subject; returns a session token."
      )
  )
  .add(
    HttpApiEndpoint.get("getMember", "/api/members/:memberId")
      .setPath(memberPath)
      .addSuccess(Member)
      .addError(MemberNotFound)
  )
  .add(
    HttpApiEndpoint.patch("updateProfile", "/api/members/:memberId")
      .setPath(memberPath)
      .setPayload(UpdateProfileRequest)
      .addSuccess(Member)
      .addError(MemberNotFound)
      .addError(MemberGone)
      .addError(NothingToUpdate)
      .addError(Forbidden)
      .middleware(MemberSession)
  )
  .add(
    HttpApiEndpoint.del("deleteMember", "/api/members/:memberId")
      .setPath(memberPath)
      .addSuccess(Member)
      .addError(MemberNotFound)
      .addError(MemberGone)
      .addError(Forbidden)
      .middleware(MemberSession)
  )
  .add(
    HttpApiEndpoint.post("login", "/api/members/:memberId/login")
      .setPath(memberPath)
      .addSuccess(LoginResponse)
      .addError(MemberNotFound)
      .addError(MemberGone)
      .addError(Forbidden)
      .middleware(MemberSession)
      .annotate(OpenApi.Description, "Opens a session and publishes a login event; needs the member's session token.")
  )
  .addError(ServiceUnavailable)
  .middleware(JsonBody)
{}

export class AuthApi extends HttpApi.make("auth-service").add(MembersGroup).annotate(OpenApi.Title, "auth-service") {}
