import { TransactionConnection } from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/** Runs `self` on a pool connection of its own even inside a transaction: its writes commit whatever the transaction does. */
export const outsideTransaction = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(
    self,
    (context: Context.Context<R>) => Context.omit(TransactionConnection)(context) as Context.Context<R>
  )
