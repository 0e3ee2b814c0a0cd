import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { HttpServerRequest } from "@effect/platform/HttpServerRequest"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ParseResult from "effect/ParseResult"
import { AuthApi, JsonBody } from "./AuthApi.ts"
import { Members } from "./Members.ts"

/** Database failures and rows that do not decode are not the caller's fault: a 500, logged with its cause. */
const internal = {
  SqlError: (error: SqlError) => Effect.die(error),
  ParseError: (error: ParseResult.ParseError) => Effect.die(error)
}

export const JsonBodyLive = Layer.succeed(
  JsonBody,
  Effect.gen(function*() {
    const request = yield* HttpServerRequest
    if (!HttpMethod.hasBody(request.method)) return
    const contentType = (request.headers["content-type"] ?? "application/json").toLowerCase()
    if (!contentType.includes("application/json")) return
    // The body text is cached by the request, so payload decoding reads it again for free.
    yield* request.json.pipe(
      Effect.catchAll((error) => {
        const reason = error.cause instanceof Error ? error.cause.message : error.message
        return new HttpApiDecodeError({
          issues: [{ _tag: "Type", path: [], message: `The body is not valid JSON: ${reason}` }],
          message: `The body is not valid JSON: ${reason}`
        })
      })
    )
  })
)

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
export const ApiLive = HttpApiBuilder.api(AuthApi).pipe(Layer.provide(MembersLive), Layer.provide(JsonBodyLive))
