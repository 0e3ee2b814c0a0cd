import {
  CurrentUser,
  Forbidden,
  InvalidUserId,
  MissingUserId,
  UserIdentity,
  userIdHeader
} from "@kpipe/contracts/Users"
import { Ids } from "@kpipe/events"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { IncomingHttpHeaders } from "node:http"

const decimal = /^[1-9][0-9]{0,15}$/

/** A positive integer id in decimal, or `undefined`. */
export const positiveId = (text: string): number | undefined => {
  const value = decimal.test(text) ? Number(text) : NaN
  return Number.isSafeInteger(value) ? value : undefined
}

const userIdHeaderKey = userIdHeader.toLowerCase()

/**
 * The user of a request's well-formed `X-User-Id`, for a fast route's `match`; `undefined` when it
 * is absent or malformed, which the route leaves to the HttpApi (`parse` gives the typed answer).
 */
export const fromHeaders = (headers: IncomingHttpHeaders): Ids.UserId | undefined => {
  const header = headers[userIdHeaderKey]
  const value = typeof header === "string" ? positiveId(header.trim()) : undefined
  return value === undefined ? undefined : Ids.UserId.make(value)
}

/** The gateway's `X-User-Id`: absent or blank → 401 `MissingUserId`, anything but a positive integer → 400 `InvalidUserId`. */
export const parse = (raw: string): Effect.Effect<Ids.UserId, MissingUserId | InvalidUserId> => {
  const text = raw.trim()
  if (text === "") return Effect.fail(new MissingUserId({ message: `Missing ${userIdHeader} header.` }))
  const value = positiveId(text)
  return value === undefined
    ? Effect.fail(new InvalidUserId({ message: `${userIdHeader} must be a positive integer.` }))
    : Effect.succeed(Ids.UserId.make(value))
}

/** Implements the contracts' `UserIdentity` middleware. */
export const layer: Layer.Layer<UserIdentity> = Layer.succeed(
  UserIdentity,
  UserIdentity.of({ gateway: (header) => parse(Redacted.value(header)) })
)

/**
 * Succeeds when the gateway's user is `ownerId` (the member or account a path names), else 403
 * `Forbidden`: a path parameter alone never says who is asking.
 */
export const requireOwner = (ownerId: number, what: string): Effect.Effect<void, Forbidden, CurrentUser> =>
  Effect.flatMap(CurrentUser, (userId) =>
    userId === ownerId
      ? Effect.void
      : Effect.fail(new Forbidden({ message: `${userIdHeader} ${userId} may not use ${what} ${ownerId}.` })))
