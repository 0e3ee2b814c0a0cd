import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type { SqlError } from "@effect/sql/SqlError"
import { AuthApi } from "@kpipe/contracts/AuthApi"
import { JsonBody } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import { Members } from "./Members.ts"

/** Database failures and rows that do not decode are not the caller's fault: a 500, logged with its cause. */
const internal = {
  SqlError: (error: SqlError) => Effect.die(error),
  ParseError: (error: ParseResult.ParseError) => Effect.die(error)
}

export const MembersLive = HttpApiBuilder.group(AuthApi, "members", (handlers) =>
  Effect.gen(function*() {
    const members = yield* Members
    return handlers
      .handle("signIn", ({ payload }) => members.signIn(payload).pipe(Effect.catchTags(internal)))
      .handle("getMember", ({ path }) => members.get(path.memberId).pipe(Effect.catchTags(internal)))
      .handle("updateProfile", ({ path, payload }) =>
        members.updateProfile(path.memberId, payload).pipe(Effect.catchTags(internal)))
      .handle("deleteMember", ({ path }) =>
        members.delete(path.memberId).pipe(Effect.catchTags(internal)))
      .handle("login", ({ path }) => members.login(path.memberId).pipe(Effect.catchTags(internal)))
  }))

/** The implemented `AuthApi`; serve it with `HttpApiBuilder.serve()`. Needs `Members`. */
export const ApiLive = HttpApiBuilder.api(AuthApi).pipe(Layer.provide(MembersLive), Layer.provide(JsonBody.layer))
