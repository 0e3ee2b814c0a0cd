import type { AuthApi } from "@kpipe/contracts"
import { type Ids, type MemberEvents } from "@kpipe/events"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { AuthClient } from "./AuthClient.ts"
import { MemberCopies, type MemberState } from "./MemberCopies.ts"

const stateOf = (member: AuthApi.Member): MemberState => ({
  memberId: member.memberId,
  nickname: member.nickname,
  email: member.email,
  status: member.status,
  sourceUpdatedAt: member.updatedAt
})

const ignored = (event: MemberEvents.MemberEvent, heldAt?: DateTime.Utc) =>
  Effect.logDebug("Stale member event ignored").pipe(
    Effect.annotateLogs({
      eventId: event.eventId,
      type: event.type,
      memberId: event.memberId,
      occurredAt: DateTime.formatIso(event.occurredAt),
      ...(heldAt !== undefined ? { heldAt: DateTime.formatIso(heldAt) } : {})
    })
  )

/**
 * Applies member events to the local copy (S1's MemberSyncService). Meant to run inside the
 * consumer's transaction, which also claims the event, so each event applies once. Events are
 * ordered by `occurredAt`, auth-service's time of the change: one older than the state held never
 * overwrites it.
 *
 * An UPDATED or DELETED about a member never seen (its CREATED is late or lost) first fetches the
 * member from auth-service and stores that state; the event then applies only if it is newer.
 * An UPDATED of the e-mail fetches too, because the event does not carry the new address.
 */
export class MemberSync extends Effect.Service<MemberSync>()("@kpipe/dday-service/MemberSync", {
  effect: Effect.gen(function*() {
    const copies = yield* MemberCopies
    const auth = yield* AuthClient

    const fetchAndStore = (memberId: Ids.MemberId) =>
      Effect.flatMap(auth.getMember(memberId), (member) => copies.putState(stateOf(member)))

    /** The copy, locked for the transaction; fetched from auth-service and stored when never seen. */
    const known = (memberId: Ids.MemberId) =>
      Effect.gen(function*() {
        const held = yield* copies.findForUpdate(memberId)
        if (Option.isSome(held)) return held.value
        yield* fetchAndStore(memberId)
        yield* Effect.logInfo("Unknown member fetched from auth-service").pipe(Effect.annotateLogs({ memberId }))
        const stored = yield* copies.findForUpdate(memberId)
        return yield* Option.match(stored, {
          onNone: () => Effect.dieMessage(`member ${memberId} missing right after it was stored`),
          onSome: Effect.succeed
        })
      })

    const created = (event: MemberEvents.MemberCreated) =>
      Effect.gen(function*() {
        const stored = yield* copies.putState({
          memberId: event.memberId,
          nickname: event.nickname,
          email: event.email,
          status: "ACTIVE",
          sourceUpdatedAt: event.occurredAt
        })
        if (!stored) yield* ignored(event)
      })

    const updated = (event: MemberEvents.MemberUpdated) =>
      Effect.gen(function*() {
        // Fetched before the member's row is locked, so that a slow auth-service does not hold it.
        const current = event.changedFields.includes("email")
          ? Option.some(yield* auth.getMember(event.memberId))
          : Option.none<AuthApi.Member>()
        const held = yield* known(event.memberId)
        if (!DateTime.greaterThan(event.occurredAt, held.sourceUpdatedAt)) {
          return yield* ignored(event, held.sourceUpdatedAt)
        }
        if (Option.isSome(current)) yield* copies.putState(stateOf(current.value))
        yield* copies.applyChange(event.memberId, event.occurredAt, {
          nickname: event.changedFields.includes("nickname") ? event.nickname : undefined
        })
      })

    const deleted = (event: MemberEvents.MemberDeleted) =>
      Effect.gen(function*() {
        const held = yield* known(event.memberId)
        const applied = yield* copies.markDeleted(event.memberId, event.occurredAt)
        if (!applied) yield* ignored(event, held.sourceUpdatedAt)
      })

    const apply = Effect.fn("MemberSync.apply")(function*(event: MemberEvents.MemberEvent) {
      yield* Effect.annotateCurrentSpan({ "member.id": event.memberId, "member.event_type": event.type })
      switch (event.type) {
        case "MemberCreated":
          return yield* created(event)
        case "MemberUpdated":
          return yield* updated(event)
        case "MemberDeleted":
          return yield* deleted(event)
      }
    })

    return { apply } as const
  })
}) {}
