import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import kafkajs, {
  type Broker,
  type Cluster,
  type EachBatchPayload,
  type GroupDescriptions,
  type IHeaders,
  type KafkaMessage,
  type PartitionAssigner
} from "kafkajs"
import { connected } from "./internal/connected.ts"
import { KafkaClient } from "./KafkaClient.ts"
import { endsMembership, fromCause, KafkaError } from "./KafkaError.ts"

// kafkajs spreads its exports into `module.exports`, which Node's ESM loader cannot see as named exports.
const { AssignerProtocol, PartitionAssigners } = kafkajs

export interface ConsumerRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  /** Header names as sent; a repeated header's values are joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  readonly timestamp: string
}

export interface ConsumerOptions {
  readonly groupId: string
  readonly topics: ReadonlyArray<string>
  /** Where a group with no committed offset starts (default: the beginning, as the seeds' `earliest`). */
  readonly fromBeginning?: boolean | undefined
  /**
   * This member's identity across restarts, unique among the group's live members (e.g. the pod's
   * name): what Kafka's `group.instance.id` is for, which kafkajs lacks. A member killed without
   * leaving (SIGKILL, OOM) stays in the group until its session times out, and a rebalance waits
   * for it that long; a member started under the same instance id removes it first (LeaveGroup) and
   * joins at once. Found in a stable group only (a rebalancing one does not show what its members
   * subscribed with); otherwise the join waits for the session as without one. Two live members
   * sharing one would remove each other at each start: a needless rebalance, nothing worse.
   */
  readonly instanceId?: string | undefined
  readonly sessionTimeout?: number | undefined
  readonly rebalanceTimeout?: number | undefined
  readonly heartbeatInterval?: number | undefined
  readonly maxWaitTimeInMs?: number | undefined
  /**
   * A fetch is answered once this many bytes are there, or after `maxWaitTimeInMs` (default 1: at
   * once). Under load, records then come in fewer, bigger batches (fewer round trips and commits
   * per record); under light traffic a record may wait up to `maxWaitTimeInMs`.
   */
  readonly minBytes?: number | undefined
  /** Most bytes a fetch returns per partition (default 1 MiB, kafkajs's): bounds the records of one batch. */
  readonly maxBytesPerPartition?: number | undefined
  readonly partitionsConsumedConcurrently?: number | undefined
  readonly disconnectTimeout?: Duration.DurationInput | undefined
}

/**
 * A handler never fails: retrying and dead-lettering happen inside it, so a record's offset is
 * committed only once the handler has finished with it.
 */
export type Handler<R> = (record: ConsumerRecord) => Effect.Effect<void, never, R>

/** The records of one partition from one fetch, in offset order. */
export interface Batch {
  readonly topic: string
  readonly partition: number
  readonly records: ReadonlyArray<ConsumerRecord>
  /**
   * Declares `record` and everything before it in this batch finished: its offset is committed
   * when the batch handler returns or is interrupted (shutdown, partition revoked).
   */
  readonly done: (record: ConsumerRecord) => Effect.Effect<void>
}

export type BatchHandler<R> = (batch: Batch) => Effect.Effect<void, never, R>

/**
 * The batches of several partitions fetched together, handed over at once (`runBatchGroups`): one
 * transaction and one offset commit for all of them instead of one per partition.
 */
export type GroupHandler<R> = (batches: ReadonlyArray<Batch>) => Effect.Effect<void, never, R>

/** Where a group member stands, as an `Observer` hears it. */
export type MemberState = "joining" | "joined" | "crashed" | "stopped"

/**
 * Told how each group member in its context fares, e.g. by a service's readiness check; optional
 * (members run the same without one).
 */
export class Observer extends Context.Tag("@kpipe/kafka/Consumer/Observer")<Observer, {
  readonly member: (
    member: { readonly groupId: string; readonly topics: ReadonlyArray<string> },
    state: MemberState,
    detail?: string
  ) => void
}>() {}

/** How long each batch handler ran, by group. */
export const batchDuration = Metric.histogram(
  "kpipe_consumer_batch_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "Time a consumer group spent on one fetched batch of a partition"
)

const headerValue = (value: IHeaders[string]): string | undefined =>
  value === undefined ? undefined : Array.isArray(value) ? value.map(String).join(", ") : String(value)

const toHeaders = (headers: IHeaders | undefined): Record<string, string> => {
  const result: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers ?? {})) {
    const text = headerValue(value)
    if (text !== undefined) result[name] = text
  }
  return result
}

const toRecord = (topic: string, partition: number, message: KafkaMessage): ConsumerRecord => ({
  topic,
  partition,
  offset: message.offset,
  key: message.key,
  value: message.value,
  headers: toHeaders(message.headers),
  timestamp: message.timestamp
})

const nextOffset = (offset: string) => (BigInt(offset) + 1n).toString()

/**
 * kafkajs's round-robin assigner under its own name (members with and without an instance id share
 * a group), with `instanceId` as its subscription's user data, which the group shows its successor.
 * kafkajs hands an assigner the consumer's cluster, which `evictPredecessors` talks through.
 */
const instanceAssigner = (instanceId: string, onCluster: (cluster: Cluster) => void): PartitionAssigner => (config) => {
  onCluster(config.cluster)
  const roundRobin = PartitionAssigners.roundRobin(config)
  return {
    name: roundRobin.name,
    version: roundRobin.version,
    assign: (group) => roundRobin.assign(group),
    protocol: ({ topics }) => ({
      name: roundRobin.name,
      metadata: AssignerProtocol.MemberMetadata.encode({
        version: roundRobin.version,
        topics,
        userData: Buffer.from(instanceId)
      })
    })
  }
}

const instanceOf = (metadata: Buffer): string | undefined => {
  if (metadata.length === 0) return undefined
  try {
    return AssignerProtocol.MemberMetadata.decode(metadata)?.userData.toString("utf8")
  } catch {
    // Another protocol's metadata: not a member of ours.
    return undefined
  }
}

/** The group's members registered under `instanceId`, removed; returns their ids. */
const evictPredecessors = (cluster: Cluster, groupId: string, instanceId: string) =>
  Effect.tryPromise({
    try: async () => {
      // `leaveGroup` is public on kafkajs's broker (the consumer group leaves through it), untyped.
      const coordinator = await cluster.findGroupCoordinator({ groupId }) as Broker & {
        readonly leaveGroup: (request: { readonly groupId: string; readonly memberId: string }) => Promise<unknown>
      }
      const { groups } = await coordinator.describeGroups({ groupIds: [groupId] }) as GroupDescriptions
      const predecessors = (groups.find((group) => group.groupId === groupId)?.members ?? [])
        .filter((member) => instanceOf(member.memberMetadata) === instanceId)
        .map((member) => member.memberId)
      for (const memberId of predecessors) await coordinator.leaveGroup({ groupId, memberId })
      return predecessors
    },
    catch: fromCause("Run")
  })

/**
 * Runs a consumer group member until the enclosing scope closes, handing each fetched batch of a
 * partition to `handler`. The group keeps the member while a slow handler runs because heartbeats
 * go out from a side fiber. When the member stops (scope closed), loses the partition, or hears from
 * the coordinator that the group is rebalancing, the handler is interrupted, so unfinished work
 * rolls back; only what it declared `done` is committed (nothing at all after a seek; after a
 * rebalance the commit is tried, and what it misses is redelivered to the partition's next owner).
 */
export const runBatches = <R>(
  options: ConsumerOptions,
  handler: BatchHandler<R>
): Effect.Effect<void, KafkaError, KafkaClient | Scope.Scope | R> => runMember(options, { _tag: "Batch", handler })

/**
 * `runBatches`, with the batches that one fetch brought (up to `partitionsConsumedConcurrently`
 * partitions) handed to `handler` together, and their offsets committed in one request. The group is
 * one unit of work: a member stopping, a partition revoked, or a rebalance interrupts all of it, and
 * each partition's records declared `done` before that are committed. kafkajs fetches again only
 * once every batch of a fetch is finished, so a fetch's batches wait for each other either way;
 * together they cost one round of statements instead of one per partition.
 */
export const runBatchGroups = <R>(
  options: ConsumerOptions,
  handler: GroupHandler<R>
): Effect.Effect<void, KafkaError, KafkaClient | Scope.Scope | R> => runMember(options, { _tag: "Group", handler })

type Handling<R> =
  | { readonly _tag: "Batch"; readonly handler: BatchHandler<R> }
  | { readonly _tag: "Group"; readonly handler: GroupHandler<R> }

/** A partition's batch in a group: what its offset commit needs. */
interface Member {
  readonly batch: Batch
  readonly payload: EachBatchPayload
  /** The offset to commit (the next one to read), once records are done and until committed. */
  commitFrom: string | undefined
}

/** The batches gathered for one unit of work, and that work once started. */
interface Gathered {
  readonly members: Array<Member>
  readonly finished: Deferred.Deferred<void>
  fiber: Fiber.RuntimeFiber<void> | undefined
  cancelled: boolean
}

const runMember = <R>(
  options: ConsumerOptions,
  handling: Handling<R>
): Effect.Effect<void, KafkaError, KafkaClient | Scope.Scope | R> =>
  Effect.gen(function*() {
    const { kafka } = yield* KafkaClient
    const runtime = yield* Effect.runtime<never>()
    // Created before the consumer, so its finalizer runs after `disconnect` has drained the handlers.
    const runPromise = yield* FiberSet.makeRuntimePromise<R>()
    const runFork = yield* FiberSet.makeRuntime<never>()
    const runGroup = yield* FiberSet.makeRuntime<R>()
    const observer = yield* Effect.serviceOption(Observer)
    const report = (state: MemberState, detail?: string) => {
      if (Option.isSome(observer)) {
        observer.value.member({ groupId: options.groupId, topics: options.topics }, state, detail)
      }
    }
    const timed = Metric.tagged(batchDuration, "group", options.groupId)
    const heartbeatEvery = Duration.millis(options.heartbeatInterval ?? 3_000)
    const disconnectTimeout = options.disconnectTimeout ?? Duration.seconds(10)
    const rebalanceTimeout = options.rebalanceTimeout ?? 60_000
    const sessionTimeout = options.sessionTimeout ?? 30_000
    let stopping = false
    let cluster: Cluster | undefined
    // Set when the coordinator asked this member to rejoin: no new batch starts until it has.
    let rejoining = false

    const consumer = yield* connected(
      () =>
        kafka.consumer({
          groupId: options.groupId,
          sessionTimeout,
          rebalanceTimeout,
          ...(options.instanceId === undefined ? {} : {
            partitionAssigners: [instanceAssigner(options.instanceId, (c) => (cluster = c))]
          }),
          heartbeatInterval: options.heartbeatInterval ?? 3_000,
          maxWaitTimeInMs: options.maxWaitTimeInMs ?? 500,
          minBytes: options.minBytes ?? 1,
          maxBytesPerPartition: options.maxBytesPerPartition ?? 1_048_576,
          allowAutoTopicCreation: false,
          // A batch interrupted by our own shutdown crashes the consumer; it must not come back.
          retry: {
            restartOnFailure: () => Promise.resolve(!stopping)
          }
        }),
      disconnectTimeout
    )
    // A start again (below) still joining; kafkajs's `disconnect` would not stop a member that has
    // not finished joining, and it would go on fetching on its own.
    let restarting: Promise<void> | undefined

    // Released before `disconnect` (finalizers run in reverse).
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stopping = true
        report("stopped")
      }).pipe(
        Effect.zipRight(
          Effect.tryPromise(() => restarting ?? Promise.resolve()).pipe(
            // Its failure is a crash, already logged; only its end matters here.
            Effect.orElse(() => Effect.void),
            Effect.interruptible,
            Effect.timeout(disconnectTimeout),
            Effect.catchAll(() =>
              Effect.logWarning(
                "A restarted consumer member was still joining when the consumer stopped; it may stay in the group until its session times out"
              ).pipe(Effect.annotateLogs({ groupId: options.groupId }))
            )
          )
        )
      )
    )

    report("joining")
    const joined = yield* Deferred.make<void>()
    // A heartbeat the coordinator accepted means no rebalance waits for this member (any more).
    consumer.on(consumer.events.HEARTBEAT, () => {
      rejoining = false
    })
    const runConfig = {
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 1,
      eachBatch: (payload: EachBatchPayload) => runPromise(processBatch(payload))
    }
    // kafkajs restarts a crashed member only after a retriable error; after any other (a join refused
    // with INCONSISTENT_GROUP_PROTOCOL during a rolling change of assigners, a coordinator error) the
    // member would stay down for good while the process lives on. It is started again here, with
    // backoff, until it joins.
    let crashesWithoutRestart = 0
    const startAgain: Effect.Effect<void> = Effect.suspend(() => {
      const delay = Duration.millis(Math.min(30_000, 1_000 * 2 ** crashesWithoutRestart++))
      return Effect.logError(
        `Kafka consumer stopped after an error kafkajs does not restart from; starting it again in ${
          Duration.format(delay)
        }`
      ).pipe(
        Effect.zipRight(Effect.sleep(delay)),
        Effect.zipRight(Effect.suspend(() =>
          stopping ? Effect.void : Effect.tryPromise({
            try: () => (restarting = consumer.run(runConfig)),
            catch: fromCause("Run")
          })
        )),
        // A start that fails is normally a crash, which comes back here; anything else as well.
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.void
            : Effect.logError("Kafka consumer could not be started again", cause).pipe(Effect.zipRight(startAgain))
        ),
        Effect.annotateLogs({ groupId: options.groupId })
      )
    })
    consumer.on(consumer.events.GROUP_JOIN, () => {
      rejoining = false
      crashesWithoutRestart = 0
      if (stopping) return
      report("joined")
      Deferred.unsafeDone(joined, Effect.void)
    })
    consumer.on(consumer.events.CRASH, (event) => {
      if (!stopping) {
        report("crashed", String(event.payload.error))
      }
      Runtime.runFork(runtime)(
        Effect.logError("Kafka consumer crashed", event.payload.error).pipe(
          Effect.annotateLogs({ groupId: options.groupId, restart: event.payload.restart })
        )
      )
      if (!event.payload.restart && !stopping) {
        runFork(startAgain)
      }
    })

    /**
     * One request for the offsets of `members` that have records done and not yet committed; a
     * partition whose position was moved (a seek) is left out.
     */
    const commitMembers = (members: ReadonlyArray<Member>) =>
      Effect.suspend(() => {
        const byTopic = new Map<string, Array<{ partition: number; offset: string }>>()
        for (const member of members) {
          const offset = member.commitFrom
          member.commitFrom = undefined
          if (offset === undefined || member.payload.isStale()) continue
          const partitions = byTopic.get(member.batch.topic)
          const entry = { partition: member.batch.partition, offset }
          if (partitions === undefined) byTopic.set(member.batch.topic, [entry])
          else partitions.push(entry)
        }
        if (byTopic.size === 0) return Effect.void
        const topics = [...byTopic].map(([topic, partitions]) => ({ topic, partitions }))
        return Effect.tryPromise({
          // Through a batch, not `consumer.commitOffsets`: kafkajs drops the latter once the consumer
          // is stopping, which is exactly when finished work must still be committed.
          try: () => members[0]!.payload.commitOffsetsIfNecessary({ topics }),
          catch: fromCause("Commit")
        }).pipe(
          // The records stay applied; their offsets are committed with the next batch, or they are
          // redelivered (and skipped as duplicates by an idempotent handler).
          Effect.catchAllCause((cause) =>
            Effect.logWarning("Offset commit failed; the records may be redelivered", cause).pipe(
              Effect.annotateLogs({
                groupId: options.groupId,
                offsets: topics.map(({ partitions, topic }) =>
                  partitions.map(({ offset, partition }) => `${topic}/${partition}@${offset}`).join(",")
                ).join(",")
              })
            )
          )
        )
      })

    let gathering: Gathered | undefined
    /**
     * Joins `member` to the group of batches arriving now (the other batches of its fetch start in
     * the same turn of the event loop), which one fiber handles once they are all in. Interrupted (the
     * member stopping, its partition revoked, a rebalance), it interrupts the whole group's work.
     */
    const gather = (member: Member, handler: GroupHandler<R>) =>
      Effect.suspend(() => {
        let group = gathering
        if (group === undefined) {
          const gathered: Gathered = {
            members: [],
            finished: Deferred.unsafeMake<void>(FiberId.none),
            fiber: undefined,
            cancelled: false
          }
          gathering = group = gathered
          setImmediate(() => {
            gathering = undefined
            if (gathered.cancelled) {
              Deferred.unsafeDone(gathered.finished, Exit.void)
              return
            }
            gathered.fiber = runGroup(
              handler(gathered.members.map(({ batch }) => batch)).pipe(
                Effect.ensuring(commitMembers(gathered.members)),
                // A defect ends every member's batch with it, as it would have ended each one's own;
                // a group interrupted because one member stopped ends the others' batches quietly.
                Effect.onExit((exit) =>
                  Deferred.done(
                    gathered.finished,
                    Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? exit : Exit.void
                  )
                )
              )
            )
          })
        }
        const joined = group
        joined.members.push(member)
        return Deferred.await(joined.finished).pipe(
          Effect.onInterrupt(() =>
            Effect.suspend(() => {
              joined.cancelled = true
              return joined.fiber === undefined ? Effect.void : Fiber.interrupt(joined.fiber)
            })
          )
        )
      })

    const processBatch = (payload: EachBatchPayload) =>
      Effect.gen(function*() {
        const { batch } = payload
        const active = () => payload.isRunning() && !payload.isStale() && !rejoining
        // Ends (and so interrupts the handler) once the coordinator says this member must rejoin:
        // a rebalance waits for every member to rejoin, and kafkajs rejoins only after this batch
        // returns. Finished records are still committed (the generation is current until the
        // rebalance completes); the rest rolls back and goes to the partition's next owner.
        const heartbeats = Effect.tryPromise({ try: () => payload.heartbeat(), catch: fromCause("Heartbeat") }).pipe(
          Effect.delay(heartbeatEvery),
          Effect.as(false),
          Effect.catchAll((error) =>
            endsMembership(error) ? Effect.succeed(true) : Effect.logWarning(
              "Heartbeat failed; the batch goes on, and the group removes this member if heartbeats keep failing",
              error
            ).pipe(
              Effect.annotateLogs({
                groupId: options.groupId,
                topic: payload.batch.topic,
                partition: payload.batch.partition
              }),
              Effect.as(false)
            )
          ),
          Effect.repeat({ until: (rejoin) => rejoin }),
          Effect.zipRight(Effect.sync(() => {
            rejoining = true
          })),
          Effect.zipRight(
            Effect.logInfo("The group is rebalancing; the batch in progress stops here").pipe(
              Effect.annotateLogs({
                groupId: options.groupId,
                topic: payload.batch.topic,
                partition: payload.batch.partition
              })
            )
          )
        )
        const stopped = Effect.sync(active).pipe(
          Effect.repeat({ while: (isActive) => isActive, schedule: Schedule.spaced("50 millis") })
        )
        // Unresolved records are fetched again from the last resolved offset once the member rejoined.
        if (!active()) return
        const records = batch.messages.map((message) => toRecord(batch.topic, batch.partition, message))
        const member: Member = {
          batch: {
            topic: batch.topic,
            partition: batch.partition,
            records,
            done: (record) =>
              Effect.sync(() => {
                payload.resolveOffset(record.offset)
                member.commitFrom = nextOffset(record.offset)
              })
          },
          payload,
          commitFrom: undefined
        }
        const started = performance.now()
        yield* (handling._tag === "Batch" ? handling.handler(member.batch) : gather(member, handling.handler)).pipe(
          Effect.raceFirst(stopped),
          Effect.raceFirst(heartbeats)
        ).pipe(
          Effect.ensuring(commitMembers([member])),
          Effect.ensuring(Effect.suspend(() => Metric.update(timed, (performance.now() - started) / 1000)))
        )
      })

    // Right after a topic is created, a broker of a multi-broker cluster that has not applied the
    // metadata yet answers UNKNOWN_TOPIC_OR_PARTITION (retriable) to the subscription's metadata call.
    yield* Effect.tryPromise({
      try: () => consumer.subscribe({ topics: [...options.topics], fromBeginning: options.fromBeginning ?? true }),
      catch: fromCause("Subscribe")
    }).pipe(
      Effect.retry({
        while: (error) => error.retriable,
        schedule: Schedule.spaced("100 millis").pipe(Schedule.upTo(Duration.seconds(5)))
      })
    )
    if (options.instanceId !== undefined && cluster !== undefined) {
      const instanceId = options.instanceId
      yield* evictPredecessors(cluster, options.groupId, instanceId).pipe(
        Effect.timeout(Duration.millis(sessionTimeout)),
        Effect.flatMap((evicted) =>
          evicted.length === 0 ? Effect.void : Effect.logInfo(
            "Removed this instance's predecessor from the group: the join need not wait for its session to expire"
          ).pipe(Effect.annotateLogs({ memberIds: evicted.join(",") }))
        ),
        Effect.catchAll((error) =>
          Effect.logWarning("Could not look for this instance's predecessor; the join may wait for its session", error)
        ),
        Effect.annotateLogs({ groupId: options.groupId, instanceId })
      )
    }
    yield* Effect.tryPromise({ try: () => consumer.run(runConfig), catch: fromCause("Run") })
    yield* Deferred.await(joined).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(rebalanceTimeout),
        onTimeout: () =>
          new KafkaError({ reason: "Run", retriable: true, cause: `group ${options.groupId} was not joined in time` })
      })
    )
  }).pipe(Effect.withSpan("Consumer.run", { attributes: { "messaging.consumer.group.name": options.groupId } }))

/** `runBatches` with one record at a time. */
export const run = <R>(
  options: ConsumerOptions,
  handler: Handler<R>
): Effect.Effect<void, KafkaError, KafkaClient | Scope.Scope | R> =>
  runBatches(
    options,
    (batch) =>
      Effect.forEach(batch.records, (record) => Effect.zipRight(handler(record), batch.done(record)), { discard: true })
  )

export const layer = <R>(
  options: ConsumerOptions,
  handler: Handler<R>
): Layer.Layer<never, KafkaError, KafkaClient | R> => Layer.scopedDiscard(run(options, handler))
