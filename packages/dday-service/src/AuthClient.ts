import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import { AuthApi } from "@kpipe/contracts"
import type { Ids } from "@kpipe/events"
import { RetryPolicy } from "@kpipe/pipeline"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import { Config } from "./Config.ts"

/** auth-service does not know the member (404): asking again will not help. */
export class MemberUnknown extends Data.TaggedError("MemberUnknown")<{ readonly memberId: Ids.MemberId }> {
  override get message() {
    return `auth-service has no member ${this.memberId}`
  }
}

/**
 * auth-service is away (unreachable, no answer in time, 408, 429, 502-504, its typed 503) even after
 * the client's retries: not the event's fault, so the consumer waits for it (`"wait"`).
 */
export class AuthUnavailable extends Data.TaggedError("AuthUnavailable")<{
  readonly memberId: Ids.MemberId
  readonly cause: unknown
}> {
  override get message() {
    return `auth-service unavailable fetching member ${this.memberId}: ${String(this.cause)}`
  }
}

/** auth-service answered 500 even after the client's retries: retried per the policy, then dead-lettered. */
export class AuthServerError extends Data.TaggedError("AuthServerError")<{
  readonly memberId: Ids.MemberId
  readonly cause: unknown
}> {
  override get message() {
    return `auth-service failed fetching member ${this.memberId}: ${String(this.cause)}`
  }
}

/** auth-service answered, but not as its contract says (an unexpected status or body). */
export class AuthRejected extends Data.TaggedError("AuthRejected")<{
  readonly memberId: Ids.MemberId
  readonly cause: unknown
}> {
  override get message() {
    return `auth-service gave an unusable answer for member ${this.memberId}: ${String(this.cause)}`
  }
}

/** Two quick retries of transient failures; the consumer's own retry policy takes it from there. */
export const retryPolicy: RetryPolicy.RetryPolicy = RetryPolicy.make({
  initialDelay: "100 millis",
  factor: 2,
  maxDelay: "1 second",
  maxRetries: 2,
  jitter: 0.2
})

const transientStatuses = new Set([408, 429, 500, 502, 503, 504])

const isServerError = (error: unknown) =>
  HttpClientError.isHttpClientError(error) && error._tag === "ResponseError" && error.response.status === 500

export const isTransient = (error: unknown): boolean =>
  Cause.isTimeoutException(error) ||
  // auth-service's own typed 503 (its database or broker did not answer), decoded by the contract.
  Predicate.isTagged(error, "ServiceUnavailable") ||
  (HttpClientError.isHttpClientError(error) &&
    ((error._tag === "RequestError" && error.reason === "Transport") ||
      (error._tag === "ResponseError" && transientStatuses.has(error.response.status))))

/**
 * auth-service's members, through its `AuthApi` contract: the fallback for a member event about a
 * member the local copy has never seen, at `Config.authServiceUrl` with `Config.authTimeout` per
 * attempt. Needs an `HttpClient`.
 */
export class AuthClient extends Effect.Service<AuthClient>()("@kpipe/dday-service/AuthClient", {
  effect: Effect.gen(function*() {
    const { authServiceUrl, authTimeout: timeout } = yield* Config
    const client = yield* HttpApiClient.make(AuthApi.AuthApi, { baseUrl: authServiceUrl })

    const getMember = Effect.fn("AuthClient.getMember")(function*(memberId: Ids.MemberId) {
      yield* Effect.annotateCurrentSpan({ "auth.member_id": memberId })
      return yield* client.members.getMember({ path: { memberId } }).pipe(
        Effect.timeout(timeout),
        Effect.retry({ schedule: RetryPolicy.schedule(retryPolicy), while: isTransient }),
        Effect.mapError((error): MemberUnknown | AuthUnavailable | AuthServerError | AuthRejected =>
          error._tag === "MemberNotFound"
            ? new MemberUnknown({ memberId })
            : isServerError(error)
            ? new AuthServerError({ memberId, cause: error })
            : isTransient(error)
            ? new AuthUnavailable({ memberId, cause: error })
            : new AuthRejected({ memberId, cause: error })
        )
      )
    })

    return { getMember } as const
  })
}) {}
