import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type { SqlError } from "@effect/sql/SqlError"
import { DDayApi } from "@kpipe/contracts/DDayApi"
import { MemberNotFound } from "@kpipe/contracts/Members"
import { JsonBody } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import { DDays } from "./DDays.ts"
import { MemberReferences } from "./MemberReferences.ts"

/** Database failures and rows that do not decode are not the caller's fault: a 500, logged with its cause. */
const internal = {
  SqlError: (error: SqlError) => Effect.die(error),
  ParseError: (error: ParseResult.ParseError) => Effect.die(error)
}

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
  Layer.provide(JsonBody.layer)
)
