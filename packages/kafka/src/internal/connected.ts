import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { fromCause } from "../KafkaError.ts"

interface Connectable {
  connect(): Promise<void>
  disconnect(): Promise<void>
}

/**
 * A kafkajs producer, consumer or admin, connected for the life of the scope. Disconnecting waits
 * for in-flight work, but never longer than `disconnectTimeout`, so shutdown cannot hang.
 */
export const connected = <A extends Connectable>(create: () => A, disconnectTimeout: Duration.DurationInput) => {
  const disconnect = (client: A) =>
    Effect.tryPromise(() => client.disconnect()).pipe(
      Effect.timeoutOption(disconnectTimeout),
      Effect.ignoreLogged,
      Effect.interruptible
    )
  return Effect.acquireRelease(
    Effect.try({ try: create, catch: fromCause("Configure") }).pipe(
      Effect.tap((client) =>
        Effect.tryPromise({ try: () => client.connect(), catch: fromCause("Connect") }).pipe(
          Effect.tapError(() => disconnect(client))
        )
      )
    ),
    disconnect
  )
}
