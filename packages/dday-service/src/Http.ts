import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { DDay, DDayApi, DDayList, DDayNotFound, MemberCopy } from "@kpipe/contracts/DDayApi"
import { MemberGone, MemberNotFound } from "@kpipe/contracts/Members"
import type { Ids } from "@kpipe/events"
import { GatewayUser, JsonBody, Unavailable } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as DDays from "./DDays.ts"
import { MemberCopies } from "./MemberCopies.ts"

const notFound = (error: DDays.MemberNotFound) => Effect.fail(new MemberNotFound({ memberId: error.memberId }))
const gone = (error: DDays.MemberGone) => Effect.fail(new MemberGone({ memberId: error.memberId }))

/** The gateway's user must be the path's member. */
const ownDDays = (memberId: Ids.MemberId) => GatewayUser.requireOwner(memberId, "the D-Days of member")

const DDaysLive = HttpApiBuilder.group(DDayApi, "ddays", (handlers) =>
  Effect.gen(function*() {
    const ddays = yield* DDays.DDays
    return handlers
      .handle("create", ({ path, payload }) =>
        ownDDays(path.memberId).pipe(
          Effect.zipRight(ddays.create(path.memberId, payload)),
          Effect.map((dday) => new DDay(dday)),
          Effect.catchTags({ MemberNotFound: notFound, MemberGone: gone }),
          Unavailable.orServiceUnavailable("D-Days")
        ))
      .handle("list", ({ path }) =>
        ownDDays(path.memberId).pipe(
          Effect.zipRight(ddays.list(path.memberId)),
          Effect.map((list) => new DDayList({ memberId: path.memberId, ddays: list.map((dday) => new DDay(dday)) })),
          Effect.catchTags({ MemberNotFound: notFound, MemberGone: gone }),
          Unavailable.orServiceUnavailable("D-Days")
        ))
      .handle("remove", ({ path }) =>
        ownDDays(path.memberId).pipe(
          Effect.zipRight(ddays.remove(path.memberId, path.ddayId)),
          Effect.catchTags({ DDayNotFound: (error) => Effect.fail(new DDayNotFound(error)) }),
          Unavailable.orServiceUnavailable("D-Days")
        ))
  }))

const MembersLive = HttpApiBuilder.group(DDayApi, "members", (handlers) =>
  Effect.gen(function*() {
    const copies = yield* MemberCopies
    return handlers.handle("getMember", ({ path }) =>
      GatewayUser.requireOwner(path.memberId, "the copy of member").pipe(
        Effect.zipRight(copies.find(path.memberId)),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new MemberNotFound({ memberId: path.memberId })),
          onSome: ({ email, ...copy }) =>
            Effect.succeed(new MemberCopy({ ...copy, ...(email !== null ? { email } : {}) }))
        })),
        Unavailable.orServiceUnavailable("Member copies")
      ))
  }))

/**
 * `DDayApi` implemented on `DDays` and `MemberCopies`: domain results and errors mapped to the
 * contract's; a member's D-Days and copy only for the gateway's user of that id.
 */
export const layer = HttpApiBuilder.api(DDayApi).pipe(
  Layer.provide(Layer.mergeAll(DDaysLive, MembersLive)),
  Layer.provide(Layer.merge(JsonBody.layer, GatewayUser.layer))
)
