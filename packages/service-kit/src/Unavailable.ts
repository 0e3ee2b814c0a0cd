import { ServiceUnavailable } from "@kpipe/contracts/ServiceUnavailable"
import { isInfrastructure } from "@kpipe/pipeline"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** The typed errors of the infrastructure clients (`@effect/sql`, `@kpipe/redis`, `@kpipe/kafka`). */
export type InfrastructureError = { readonly _tag: "SqlError" | "RedisError" | "KafkaError" }

const infrastructureTags = new Set<unknown>(["SqlError", "RedisError", "KafkaError"])

// Asked of every failed request (most answers of a sale are typed failures): a plain property read.
export const isInfrastructureError = (error: unknown): error is InfrastructureError =>
  typeof error === "object" && error !== null && infrastructureTags.has((error as { readonly _tag?: unknown })._tag)

/**
 * The one answer to an infrastructure fault in a request: the database, Redis or the broker not
 * answering becomes the contracts' typed 503 `ServiceUnavailable` (logged at Warning with what it
 * affected), never a defect and never a 500. Domain errors pass through unchanged. A COMMIT or
 * ROLLBACK on a lost connection reaches here as a defect carrying the `SqlError` (@effect/sql runs
 * them with `orDie`): that is the same fault, and the same 503. A `SqlError` that says nothing of
 * the database being away (a violated constraint, a wrong statement: the pipeline's
 * `isInfrastructure` tells) is a bug no retry cures: a defect, answered 500 and logged at Error by
 * `HttpServe`, not a 503 inviting the client to retry for ever.
 */
export const orServiceUnavailable = (affected: string) =>
<A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, InfrastructureError> | ServiceUnavailable, R> => {
  const unavailable = (error: InfrastructureError, message: string) =>
    error._tag === "SqlError" && !isInfrastructure(error)
      ? Effect.die(error)
      : Effect.logWarning(`${affected}: ${error._tag}, answered 503`, error).pipe(
        Effect.zipRight(Effect.fail(new ServiceUnavailable({ message })))
      )
  return Effect.catchIf(
    self,
    isInfrastructureError,
    (error) => unavailable(error, `${affected} is temporarily unavailable; please retry.`)
  ).pipe(
    // A COMMIT that got no answer may have been applied: the client must not take the 503 as "nothing happened".
    Effect.catchSomeDefect((defect) =>
      isInfrastructureError(defect)
        ? Option.some(unavailable(
          defect,
          `${affected}: the database connection was lost while finishing; the outcome is unknown. Retry with the same Idempotency-Key, or check before retrying.`
        ))
        : Option.none()
    )
  ) as Effect.Effect<A, Exclude<E, InfrastructureError> | ServiceUnavailable, R>
}
