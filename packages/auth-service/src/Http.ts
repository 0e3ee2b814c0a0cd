import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import {
  AuthApi,
  CurrentMember,
  LoginResponse,
  Member,
  MemberSession,
  NothingToUpdate,
  SessionToken,
  SignInResponse,
  Unauthenticated
} from "@kpipe/contracts/AuthApi"
import { MemberGone, MemberNotFound } from "@kpipe/contracts/Members"
import { Forbidden } from "@kpipe/contracts/Users"
import type { Ids } from "@kpipe/events"
import { JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import * as Members from "./Members.ts"
import { SessionTokens } from "./SessionTokens.ts"

const toMember = (member: Members.Member) =>
  new Member({
    memberId: member.memberId,
    provider: member.provider,
    subject: member.subject,
    nickname: member.nickname,
    status: member.status,
    createdAt: member.createdAt,
    updatedAt: member.updatedAt,
    ...(member.email !== null ? { email: member.email } : {}),
    ...(member.deletedAt !== null ? { deletedAt: member.deletedAt } : {})
  })

const notFound = (error: Members.MemberNotFound) => Effect.fail(new MemberNotFound({ memberId: error.memberId }))
const gone = (error: Members.MemberGone) =>
  Effect.fail(new MemberGone({ memberId: error.memberId, deletedAt: error.deletedAt }))
const nothingToUpdate = (error: Members.NothingToUpdate) => Effect.fail(new NothingToUpdate({ message: error.message }))

/** An event that does not encode is a bug here: a 500, logged with its cause. */
const unencodable = (error: ParseResult.ParseError) => Effect.die(error)

const rejection = {
  Missing: "Missing session token (Authorization: Bearer <token from sign-in>).",
  Invalid: "Unknown session token, or its member is deleted; sign in again.",
  Expired: "The session token expired; sign in again."
} as const

const MemberSessionLive = Layer.effect(
  MemberSession,
  Effect.map(SessionTokens, (tokens) =>
    MemberSession.of({
      sessionToken: (token) =>
        tokens.verify(token).pipe(
          Effect.catchTag(
            "TokenRejected",
            ({ reason }) => Effect.fail(new Unauthenticated({ reason, message: rejection[reason] }))
          ),
          Unavailable.orServiceUnavailable("Session check")
        )
    }))
)

/** The session's member must be the path's: another member's token is a 403. */
const requireSelf = (memberId: Ids.MemberId) =>
  Effect.flatMap(CurrentMember, (current) =>
    current === memberId
      ? Effect.void
      : Effect.fail(new Forbidden({ message: `This session is member ${current}'s, not member ${memberId}'s.` })))

const MembersLive = HttpApiBuilder.group(AuthApi, "members", (handlers) =>
  Effect.gen(function*() {
    const members = yield* Members.Members
    const tokens = yield* SessionTokens
    return handlers
      .handle("signIn", ({ payload }) =>
        members.signIn(payload).pipe(
          Effect.flatMap(({ created, member }) =>
            Effect.map(
              tokens.issue(member.memberId),
              (session) => new SignInResponse({ member: toMember(member), created, session: new SessionToken(session) })
            )
          ),
          Effect.catchTags({ ParseError: unencodable }),
          Unavailable.orServiceUnavailable("Sign-in")
        ))
      .handle("getMember", ({ path }) =>
        members.get(path.memberId).pipe(
          Effect.map(toMember),
          Effect.catchTags({ MemberNotFound: notFound }),
          Unavailable.orServiceUnavailable("Members")
        ))
      .handle("updateProfile", ({ path, payload }) =>
        requireSelf(path.memberId).pipe(
          Effect.zipRight(members.updateProfile(path.memberId, payload)),
          Effect.map(toMember),
          Effect.catchTags({
            MemberNotFound: notFound,
            MemberGone: gone,
            NothingToUpdate: nothingToUpdate,
            ParseError: unencodable
          }),
          Unavailable.orServiceUnavailable("Profile update")
        ))
      .handle("deleteMember", ({ path }) =>
        requireSelf(path.memberId).pipe(
          Effect.zipRight(members.delete(path.memberId)),
          Effect.map(toMember),
          Effect.catchTags({ MemberNotFound: notFound, MemberGone: gone, ParseError: unencodable }),
          Unavailable.orServiceUnavailable("Member deletion")
        ))
      .handle("login", ({ path }) =>
        requireSelf(path.memberId).pipe(
          Effect.zipRight(members.login(path.memberId)),
          Effect.map((session) => new LoginResponse(session)),
          Effect.catchTags({ MemberNotFound: notFound, MemberGone: gone, ParseError: unencodable }),
          Unavailable.orServiceUnavailable("Login")
        ))
  }))

/**
 * `AuthApi` implemented on `Members` and `SessionTokens`: domain results and errors mapped to the
 * contract's; a member's own changes and logins need its session token.
 */
export const layer = HttpApiBuilder.api(AuthApi).pipe(
  Layer.provide(MembersLive),
  Layer.provide(Layer.merge(JsonBody.layer, MemberSessionLive))
)
