import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { AuthApi, LoginResponse, Member, NothingToUpdate, SignInResponse } from "@kpipe/contracts/AuthApi"
import { MemberGone, MemberNotFound } from "@kpipe/contracts/Members"
import { JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import * as Members from "./Members.ts"

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

const MembersLive = HttpApiBuilder.group(AuthApi, "members", (handlers) =>
  Effect.gen(function*() {
    const members = yield* Members.Members
    return handlers
      .handle("signIn", ({ payload }) =>
        members.signIn(payload).pipe(
          Effect.map(({ created, member }) => new SignInResponse({ member: toMember(member), created })),
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
        members.updateProfile(path.memberId, payload).pipe(
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
        members.delete(path.memberId).pipe(
          Effect.map(toMember),
          Effect.catchTags({ MemberNotFound: notFound, MemberGone: gone, ParseError: unencodable }),
          Unavailable.orServiceUnavailable("Member deletion")
        ))
      .handle("login", ({ path }) =>
        members.login(path.memberId).pipe(
          Effect.map((session) => new LoginResponse(session)),
          Effect.catchTags({ MemberNotFound: notFound, MemberGone: gone, ParseError: unencodable }),
          Unavailable.orServiceUnavailable("Login")
        ))
  }))

/** `AuthApi` implemented on `Members`: domain results and errors mapped to the contract's. */
export const layer = HttpApiBuilder.api(AuthApi).pipe(Layer.provide(MembersLive), Layer.provide(JsonBody.layer))
