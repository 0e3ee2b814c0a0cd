import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpMethod from "@effect/platform/HttpMethod"
import { HttpServerRequest } from "@effect/platform/HttpServerRequest"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import { DDayApi, JsonBody, MemberNotFound } from "./DDayApi.ts"
import { DDays } from "./DDays.ts"
import { MemberReferences } from "./MemberReferences.ts"

/** Database failures and rows that do not decode are not the caller's fault: a 500, logged with its cause. */
const internal = {
  SqlError: (error: SqlError) => Effect.die(error),
  ParseError: (error: ParseResult.ParseError) => Effect.die(error)
}

const JsonBodyLive = Layer.succeed(
  JsonBody,
  Effect.gen(function*() {
    const request = yield* HttpServerRequest
    if (!HttpMethod.hasBody(request.method)) return
    const contentType = (request.headers["content-type"] ?? "application/json").toLowerCase()
    if (!contentType.includes("application/json")) return
    // The request caches the body text, so payload decoding reads it again for free.
    yield* request.json.pipe(
      Effect.catchAll((error) => {
        const reason = error.cause instanceof Error ? error.cause.message : error.message
        const message = `The body is not valid JSON: ${reason}`
        return new HttpApiDecodeError({ issues: [{ _tag: "Type", path: [], message }], message })
      })
    )
  })
)

const DDaysLive = HttpApiBuilder.group(DDayApi, "ddays", (handlers) =>
  Effect.gen(function*() {
    const ddays = yield* DDays
    return handlers
      .handle("create", ({ path, payload }) => ddays.create(path.memberId, payload).pipe(Effect.catchTags(internal)))
      .handle("list", ({ path }) => ddays.list(path.memberId).pipe(Effect.catchTags(internal)))
      .handle("remove", ({ path }) =>
        ddays.remove(path.memberId, path.ddayId).pipe(Effect.catchTags({ SqlError: internal.SqlError })))
  }))

const MembersLive = HttpApiBuilder.group(DDayApi, "members", (handlers) =>
  Effect.gen(function*() {
    const references = yield* MemberReferences
    return handlers.handle("getMember", ({ path }) =>
      references.find(path.memberId).pipe(
        Effect.catchTags({ SqlError: internal.SqlError }),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new MemberNotFound({ memberId: path.memberId })),
          onSome: Effect.succeed
        }))
      ))
  }))

/** The `DDayApi` implementation, to serve with `HttpApiBuilder.serve()`. Needs `DDays` and `MemberReferences`. */
export const ApiLive = HttpApiBuilder.api(DDayApi).pipe(
  Layer.provide(Layer.mergeAll(DDaysLive, MembersLive)),
  Layer.provide(JsonBodyLive)
)
