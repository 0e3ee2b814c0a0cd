import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { fromCause } from "../KafkaError.ts"

interface Connectable {
  connect(): Promise<void>
  disconnect(): Promise<void>
}

/**
 * Starts connecting `client`. Given up on (interrupted), the client is disconnected at once, and
 * again once the attempt ends: kafkajs goes on retrying a connection to a broker that is away after
 * a disconnect (for up to ~30 s), and a broker back meanwhile would leave a connected client that
 * nobody owns.
 */
export const connecting = <A extends Connectable, B, E>(
  client: A,
  connect: (client: A) => Promise<B>,
  disconnectNow: (client: A) => Effect.Effect<void>,
  onError: (cause: unknown) => E
) =>
  Effect.suspend(() => {
    let attempt: Promise<B> | undefined
    return Effect.tryPromise({ try: () => (attempt = connect(client)), catch: onError }).pipe(
      // Only the wait is interruptible: an interrupt that comes as the attempt succeeds then waits
      // for the caller (an acquire, whose release disconnects), instead of ending it unreleased.
      Effect.interruptible,
      Effect.onInterrupt(() =>
        Effect.zipRight(
          Effect.sync(() => {
            attempt?.then(() => client.disconnect(), () => undefined).catch(() => undefined)
          }),
          disconnectNow(client)
        )
      )
    )
  })

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
        // A caller that stops waiting (a service stopping, a producer replaced while the broker is
        // away) ends the attempt.
        connecting(client, (c) => c.connect(), disconnect, fromCause("Connect")).pipe(
          Effect.tapError(() => disconnect(client))
        )
      )
    ),
    disconnect
  )
}
