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
      // Released by an interrupted fiber (a service stopping), an `interruptible` around the whole
      // would end it before kafkajs is asked; around the call only, the timeout can still end it.
      Effect.interruptible,
      Effect.timeoutOption(disconnectTimeout),
      Effect.ignoreLogged
    )
  return Effect.acquireRelease(
    Effect.try({ try: create, catch: fromCause("Configure") }).pipe(
      Effect.tap((client) =>
        Effect.tryPromise({ try: () => client.connect(), catch: fromCause("Connect") }).pipe(
          Effect.tapError(() => disconnect(client)),
          // kafkajs retries a connection to a broker that is away for up to ~30 s: a caller that
          // stops waiting (a service stopping, a producer replaced while the broker is away) ends it.
          Effect.onInterrupt(() => disconnect(client)),
          Effect.interruptible
        )
      )
    ),
    disconnect
  )
}
