import { Producer } from "@kpipe/kafka"
import type { KafkaClient } from "@kpipe/kafka/KafkaClient"
import type { KafkaError } from "@kpipe/kafka/KafkaError"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

const batchSizeKey = MetricKey.histogram(
  "kpipe_publisher_batch_size",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 11 }),
  "Events sent per producer request by a batched publisher"
)

export const batchSize = Metric.fromMetricKey(batchSizeKey)

export interface Pending<E> {
  readonly message: Producer.ProducerMessage
  readonly done: Deferred.Deferred<void, E>
  /** When a sender that has not taken it yet gives it up (`Date.now()` ms; `Infinity`: never). */
  readonly expiresAt: number
}

export interface LaneOptions<E> {
  readonly topic: string
  readonly maxBatch: number
  readonly lanes: number
  readonly laneBy: "key" | "any"
  readonly producer: Producer.ProducerOptions
  readonly sendFailed: (cause: KafkaError) => E
  readonly shuttingDown: () => E
  readonly expired: () => E
}

const hash = (key: string) => {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * `lanes` senders, each with its own producer, each taking whatever is queued for it (up to
 * `maxBatch`) into one `producer.send` and completing every caller with that request's outcome.
 * `offer` queues a message; false once the scope is closing (nothing is sent then).
 */
export const make = <E>(
  options: LaneOptions<E>
): Effect.Effect<
  { readonly offer: (pending: Pending<E>) => Effect.Effect<boolean> },
  KafkaError,
  KafkaClient | Scope.Scope
> =>
  Effect.gen(function*() {
    const queues = yield* Effect.forEach(
      Array.from({ length: options.laneBy === "key" ? options.lanes : 1 }),
      () => Queue.unbounded<Pending<E>>()
    )
    // Labelled once: a `Metric.tagged` metric derives its key on every update.
    const metric = Metric.fromMetricKey(MetricKey.tagged(batchSizeKey, "topic", options.topic))
    let open = true
    // Queued or taken by a sender, not yet answered. Not the queues alone: a message handed to a
    // sender waiting in `take` just as the sender is interrupted is in neither a queue nor a batch.
    const unanswered = new Set<Pending<E>>()

    const send = (producer: Context.Tag.Service<Producer.Producer>, batch: ReadonlyArray<Pending<E>>) =>
      producer.send({ topic: options.topic, messages: batch.map((pending) => pending.message) }).pipe(
        Effect.exit,
        Effect.flatMap((exit) => {
          const result: Exit.Exit<void, E> = Exit.isSuccess(exit)
            ? Exit.void
            : Exit.asVoid(Exit.mapError(exit, options.sendFailed))
          return Effect.forEach(batch, (pending) => {
            unanswered.delete(pending)
            return Deferred.done(pending.done, result)
          }, { discard: true })
        }),
        Effect.zipRight(Metric.update(metric, batch.length)),
        // A batch handed to kafkajs is always seen through: its callers must learn the outcome.
        Effect.uninterruptible
      )

    // Runs last at shutdown, after the senders stopped: whoever is still unanswered learns it was not sent.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        open = false
        return Effect.forEach(unanswered, (pending) => Deferred.fail(pending.done, options.shuttingDown()), {
          discard: true
        })
      })
    )
    // Queued past its deadline (the lane busy with earlier sends): failed unsent, so its caller knows
    // for sure that it was not written.
    const expire = (late: ReadonlyArray<Pending<E>>) =>
      Effect.forEach(late, (pending) => {
        unanswered.delete(pending)
        return Deferred.fail(pending.done, options.expired())
      }, { discard: true })
    for (let lane = 0; lane < options.lanes; lane++) {
      const producer = yield* Producer.make(options.producer)
      const queue = queues[lane % queues.length]!
      yield* Queue.takeBetween(queue, 1, options.maxBatch).pipe(
        Effect.flatMap((taken) => {
          const now = Date.now()
          const batch: Array<Pending<E>> = []
          const late: Array<Pending<E>> = []
          for (const pending of taken) (pending.expiresAt < now ? late : batch).push(pending)
          return Effect.zipRight(expire(late), batch.length > 0 ? send(producer, batch) : Effect.void)
        }),
        Effect.forever,
        Effect.forkScoped
      )
    }

    const laneOf = queues.length === 1
      ? () => queues[0]!
      : (message: Producer.ProducerMessage) => {
        const key = message.key === null ? "" : message.key.toString()
        return queues[hash(key) % queues.length]!
      }
    const offer = (pending: Pending<E>) =>
      Effect.suspend(() => {
        if (!open) return Effect.succeed(false)
        unanswered.add(pending)
        return Queue.offer(laneOf(pending.message), pending)
      })
    return { offer } as const
  })
