import { ServiceUnavailable } from "@kpipe/contracts/ServiceUnavailable"
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
 * them with `orDie`): that is the same fault, and the same 503.
 */
export const orServiceUnavailable = (affected: string) =>
<A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, InfrastructureError> | ServiceUnavailable, R> => {
  const unavailable = (error: InfrastructureError) =>
    Effect.logWarning(`${affected}: ${error._tag}, answered 503`, error).pipe(
      Effect.zipRight(
        Effect.fail(new ServiceUnavailable({ message: `${affected} is temporarily unavailable; please retry.` }))
      )
    )
  return Effect.catchIf(self, isInfrastructureError, unavailable).pipe(
    Effect.catchSomeDefect((defect) => isInfrastructureError(defect) ? Option.some(unavailable(defect)) : Option.none())
  ) as Effect.Effect<A, Exclude<E, InfrastructureError> | ServiceUnavailable, R>
}
