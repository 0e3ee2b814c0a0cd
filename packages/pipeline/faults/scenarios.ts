// The fault matrix's scenarios: each pushes a workload through outbox → relay → Kafka → idempotent
// consumer while a fault is injected, then measures what the pipeline promises (nothing lost,
// nothing applied twice, each key in order, nothing dead-lettered because of the fault, nothing
// stuck) and how long it took to converge after the fault ended.
import { SqlClient } from "@effect/sql/SqlClient"
import { BenchReport } from "@kpipe/devtools"
import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { Database } from "@kpipe/sql"
import { DatabaseFaults, FaultProxy, KafkaFaults, ServiceProcess, TestKafka } from "@kpipe/testing"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { fileURLToPath } from "node:url"
import * as LocalKafka from "../../../scripts/kafka/LocalKafka.ts"
import { DeadLetter, IdempotentConsumer, Outbox, OutboxRelay, PipelineMigrations, TopicAdmin } from "../src/index.ts"
import { appliedMigrations, TestEvent, topicNamed } from "../test/utils.ts"

const replicaScript = fileURLToPath(new URL("../test/fixtures/replica.ts", import.meta.url))

/** Seconds from a fault's end until every event is applied that the matrix aims for. */
export const recoveryTarget = 10

export interface Size {
  readonly events: number
  readonly keys: number
  /** Multiplies each scenario's nominal fault duration (1 for the full matrix). */
  readonly faultScale: number
  /** How long the pipeline may take to converge after the fault ended before what is left counts as stuck. */
  readonly recoveryDeadline: Duration.DurationInput
  /** A row that resumes later than this after the fault ended prints its processes' last lines too. */
  readonly slowResume?: Duration.DurationInput | undefined
}

export interface Row {
  readonly scenario: string
  readonly events: number
  readonly lost: number
  readonly appliedTwice: number
  readonly outOfOrder: number
  readonly wronglyDeadLettered: number
  readonly stuck: number
  /**
   * Seconds from the fault's end until every event acknowledged before it ended was applied;
   * undefined when the run never converged. Events written later are ordinary traffic: a database
   * fault holds the writers up too, and their tail would measure the workload, not the pipeline.
   */
  readonly recoverySeconds: number | undefined
  /**
   * Seconds from the fault's end until the consumer applied anything again; undefined when nothing
   * was left to apply. Recovery minus this is the time to work off what piled up during the fault.
   */
  readonly resumedSeconds: number | undefined
}

interface FaultContext {
  readonly databaseUrl: Redacted.Redacted
  readonly database: string
  readonly topic: string
  readonly group: string
  readonly seconds: (nominal: number) => Duration.Duration
  readonly proxy: FaultProxy.FaultProxy
  /** The proxy between the relay's and the consumer's processes and PostgreSQL (`databaseThroughProxy`). */
  readonly databaseProxy: FaultProxy.FaultProxy | undefined
  /** Processes killed so far (`kills`). */
  readonly kills: () => number
  /** The scenario's own broker (`broker: "private"`). */
  readonly broker: KafkaFaults.Broker | undefined
  /** The scenario's own PostgreSQL cluster (`database: "private"`). */
  readonly cluster: DatabaseFaults.Cluster | undefined
  /** The 3-node Kafka cluster's nodes (`broker: "cluster"`). */
  readonly nodes: ClusterNodes | undefined
  /** The workload's topic. */
  readonly workload: FaultTopic
  /** Appends `events` to `topic` in a transaction of their own (retried like the writers' appends). */
  readonly append: (topic: FaultTopic, events: ReadonlyArray<TestEvent>) => Effect.Effect<void>
  /** Creates `topic` and its dead-letter topic on the scenario's broker (deleted when the run ends). */
  readonly createTopic: (topic: FaultTopic) => Effect.Effect<void, unknown, Scope.Scope>
  /**
   * Declares an event the fault makes unpublishable on purpose (a record the broker rejects): its row
   * must end FAILED, which then is not counted as wrongly FAILED, and it is not one of the workload's events.
   */
  readonly expectFailed: (eventId: string) => void
  /** While on, the batches of the consumer's first member do not finish (`clients: "in-process"`). */
  readonly holdBatches: (on: boolean) => void
  /** Starts a second member of the consumer's group in this process, for the rest of the run (`clients: "in-process"`). */
  readonly joinGroup: Effect.Effect<void, unknown, Scope.Scope>
}

type FaultTopic = ReturnType<typeof topicNamed>

/** The local 3-node cluster (`scripts/kafka/cluster.sh`) as a scenario's broker: nodes to kill and bring back. */
export interface ClusterNodes {
  /** The node leading most partitions of the scenario's topic. */
  readonly busiestLeader: Effect.Effect<number, unknown>
  /** SIGKILL: a crash, no clean shutdown. */
  readonly kill: (node: number) => Effect.Effect<void, unknown>
  /** Starts the nodes that are down and returns once they are back in the metadata. */
  readonly start: Effect.Effect<void, unknown>
  /** Returns once every partition of the scenario's topic has a leader other than `node`. */
  readonly electedAway: (node: number) => Effect.Effect<void, unknown>
}

export interface Scenario {
  readonly name: string
  /**
   * Where the relay and the consumer run: processes of their own, as they are deployed (default), or
   * this process, for a scenario that reaches into the consumer's batches (`holdBatches`, `joinGroup`).
   */
  readonly clients?: "processes" | "in-process"
  /** Whether the relay and the consumer reach Kafka through the fault proxy. */
  readonly throughProxy?: boolean
  /**
   * Whether the relay's and the consumer's processes reach PostgreSQL through a fault proxy of its own
   * (the writers and the matrix's watchers do not: the fault is between the pipeline and its database).
   */
  readonly databaseThroughProxy?: boolean
  /** Settings of the relay's and the consumer's processes beside the matrix's own (`clients: "processes"`). */
  readonly clientEnv?: Record<string, string>
  /** How many times in all the relay and consumer processes are SIGKILLed and replaced. */
  readonly kills?: number
  /**
   * The shared broker (default), one started for the scenario whose process the fault may kill or
   * freeze, or the local 3-node cluster (topics at RF 3 / min ISR 2) whose nodes it may kill. The
   * cluster is shared: scenarios on it must not run beside other users of it (CI runs them in
   * Cluster.test.ts, one after the other).
   */
  readonly broker?: "shared" | "private" | "cluster"
  /** The shared PostgreSQL server (default), or a cluster created for the scenario that the fault may stop. */
  readonly database?: "shared" | "private"
  /** Whether the matrix's recovery target (`recoveryTarget`) is asserted at CI size. */
  readonly meetsRecoveryTarget: boolean
  /** Injects the fault and returns once it ended. */
  readonly fault: (context: FaultContext) => Effect.Effect<void, unknown, Scope.Scope>
}

const sleepFor = (duration: Duration.Duration) => Effect.sleep(duration)

const privateBroker = (context: FaultContext) =>
  context.broker === undefined
    ? Effect.dieMessage("this scenario needs broker: \"private\"")
    : Effect.succeed(context.broker)

const clusterNodes = (context: FaultContext) =>
  context.nodes === undefined
    ? Effect.dieMessage("this scenario needs broker: \"cluster\"")
    : Effect.succeed(context.nodes)

/** Brings killed nodes back after a fault; a failure is logged (the next user of the cluster starts them). */
const restartNodes = (nodes: ClusterNodes) =>
  nodes.start.pipe(
    Effect.catchAllCause((cause) =>
      Effect.logWarning("Restarting the 3-node cluster's killed nodes failed; they stay down until started", cause)
    )
  )

const databaseProxy = (context: FaultContext) =>
  context.databaseProxy === undefined
    ? Effect.dieMessage("this scenario needs databaseThroughProxy")
    : Effect.succeed(context.databaseProxy)

/** `fault` on the relay's and consumer's path to the database for 30 s (scaled). */
const databaseProxyFault = (fault: FaultProxy.Fault) => (context: FaultContext) =>
  Effect.flatMap(databaseProxy(context), (proxy) => proxy.during(fault, sleepFor(context.seconds(30))))

const privateCluster = (context: FaultContext) =>
  context.cluster === undefined
    ? Effect.dieMessage("this scenario needs database: \"private\"")
    : Effect.succeed(context.cluster)

export const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "Kafka connection cut 60 s (proxy)",
    throughProxy: true,
    meetsRecoveryTarget: true,
    fault: ({ proxy, seconds }) => proxy.during(FaultProxy.cut, sleepFor(seconds(60)))
  },
  {
    name: "Kafka blackholed 30 s (proxy)",
    throughProxy: true,
    meetsRecoveryTarget: true,
    fault: ({ proxy, seconds }) => proxy.during(FaultProxy.blackhole, sleepFor(seconds(30)))
  },
  {
    name: "database backends terminated every 2 s for 30 s",
    meetsRecoveryTarget: true,
    fault: ({ database, databaseUrl, seconds }) =>
      DatabaseFaults.terminateBackends(databaseUrl, database).pipe(
        Effect.ignore,
        Effect.zipRight(Effect.sleep("2 seconds")),
        Effect.forever,
        Effect.timeoutOption(seconds(30)),
        Effect.asVoid
      )
  },
  {
    name: "database refusing connections 15 s",
    meetsRecoveryTarget: true,
    fault: ({ database, databaseUrl, seconds }) =>
      Effect.scoped(Effect.zipRight(DatabaseFaults.refuseConnections(databaseUrl, database), sleepFor(seconds(15))))
  },
  {
    // The fault ends once the restarted broker answers again (its start alone takes 10-30 s here).
    name: "broker SIGKILL, restarted after 30 s",
    broker: "private",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.flatMap(
        privateBroker(context),
        (broker) => Effect.scoped(Effect.zipRight(broker.crashed, sleepFor(context.seconds(30))))
      )
  },
  {
    name: "broker frozen (SIGSTOP) 30 s, then SIGCONT",
    broker: "private",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.flatMap(
        privateBroker(context),
        (broker) => Effect.scoped(Effect.zipRight(broker.frozen, sleepFor(context.seconds(30))))
      )
  },
  {
    // A failover to another host or a dropped route: the connections open to the old address get no
    // answer and no reset, new ones are accepted and then hear nothing. The proxy drops what it holds,
    // so a connection used during the fault never answers again: only the client's own timeout ends it
    // (`PG_ANSWER_TIMEOUT`, 30 s by default: a statement sent just before the path came back waits all
    // of it; the processes here run with 5 s, as a deployment that wants to be back within seconds would).
    // Kinder than a real dropped route in one way: the proxy passes the client's close on to the server
    // at once, so the server's session ends and its locks go with it.
    name: "database blackholed 30 s (proxy)",
    databaseThroughProxy: true,
    clientEnv: { PG_ANSWER_TIMEOUT: "5 seconds" },
    meetsRecoveryTarget: true,
    fault: databaseProxyFault(FaultProxy.blackhole)
  },
  {
    // The same, and new connections are not accepted either: their SYNs go unanswered, as when the
    // database's host is gone. Once PG_ANSWER_TIMEOUT has closed the silent connections, the pool's
    // next ones wait in connect: without a bound of their own, on the kernel's SYN retries (1, 3, 7,
    // 15, 31, 63 s), so they connect up to 32 s after the path is back; abandoned at the timeout, a
    // new attempt goes out every 5 s.
    name: "database unreachable 30 s (proxy: SYNs dropped)",
    databaseThroughProxy: true,
    clientEnv: { PG_ANSWER_TIMEOUT: "5 seconds" },
    meetsRecoveryTarget: true,
    fault: databaseProxyFault(FaultProxy.unreachable)
  },
  {
    // Sessions stay open and what is sent waits in the frozen server's sockets: a statement outlives
    // PG_ANSWER_TIMEOUT (5 s here), its connection is closed, and the server learns of it only when it
    // runs again, after what was already in the socket: a COMMIT sent before the close may still commit
    // although its client was told it failed, and a claim's row locks stay held until then.
    name: "PostgreSQL frozen (SIGSTOP) 30 s, then SIGCONT",
    database: "private",
    clientEnv: { PG_ANSWER_TIMEOUT: "5 seconds" },
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.flatMap(
        privateCluster(context),
        (cluster) => Effect.scoped(Effect.zipRight(cluster.frozen, sleepFor(context.seconds(30))))
      )
  },
  {
    // Fast shutdown (sessions ended, nothing listening), down, started again: an upgrade or a failover.
    name: "PostgreSQL restart, down 10 s",
    database: "private",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.flatMap(
        privateCluster(context),
        (cluster) => Effect.scoped(Effect.zipRight(cluster.down, sleepFor(context.seconds(10))))
      )
  },
  {
    // One key of its own, so that the FAILED row holds back no other key (a FAILED row blocks its key
    // until an operator retries or skips it).
    name: "oversized poison record (too large for the broker)",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.gen(function*() {
        const poison = new TestEvent({
          eventId: crypto.randomUUID(),
          key: "poison",
          seq: 1,
          data: "x".repeat(1_200_000)
        })
        context.expectFailed(poison.eventId)
        yield* context.append(context.workload, [poison])
        yield* Effect.sleep(context.seconds(10))
      })
  },
  {
    // Rows of a topic nobody created yet (a deployment that forgot one): only their key waits, the
    // workload's keys flow; once the topic exists they are published too (stuck counts them until then).
    name: "a topic missing for 30 s, then created",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.gen(function*() {
        const absent = topicNamed(TestKafka.uniqueName("faults-absent"), 3)
        yield* context.append(absent, [
          new TestEvent({ eventId: crypto.randomUUID(), key: "absent", seq: 1 }),
          new TestEvent({ eventId: crypto.randomUUID(), key: "absent", seq: 2 })
        ])
        yield* Effect.sleep(context.seconds(30))
        yield* context.createTopic(absent)
      })
  },
  {
    // The first member's batch is stuck (its transaction open) when a second member joins: the
    // rebalance interrupts the stuck batch instead of waiting for it, the joiner takes partitions over.
    name: "a member joining during a stuck batch (20 s)",
    clients: "in-process",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.gen(function*() {
        yield* Effect.addFinalizer(() => Effect.sync(() => context.holdBatches(false)))
        context.holdBatches(true)
        yield* Effect.sleep("2 seconds")
        yield* context.joinGroup
        yield* Effect.sleep(context.seconds(20))
        context.holdBatches(false)
      })
  },
  {
    // The fault ends at the election (every partition led by another node): the recovery is the time
    // from the election until everything is applied. The killed node comes back 30 s after the kill,
    // while the workload still runs (a scope finalizer restarts it if the run ends first).
    //
    // Not asserted against the target in CI: when the killed node was the group's coordinator, the
    // kafkajs consumer crashes (retries to the dead node exceeded) and restarts after its backoff
    // (~3 s), then rejoins; at CI size the row measured 5.3-9.3 s, too close to 10 s for a CI gate.
    // Cluster.test.ts asserts that an event appended after the kill is applied within 15 s.
    name: "leader SIGKILL (3 brokers, RF 3, min ISR 2), restarted after 30 s",
    broker: "cluster",
    meetsRecoveryTarget: false,
    fault: (context) =>
      Effect.gen(function*() {
        const nodes = yield* clusterNodes(context)
        const leader = yield* nodes.busiestLeader
        yield* Effect.addFinalizer(() => restartNodes(nodes))
        yield* nodes.kill(leader)
        yield* Effect.logInfo(`fault: node ${leader} killed`)
        yield* Effect.forkScoped(Effect.zipRight(Effect.sleep(context.seconds(30)), restartNodes(nodes)))
        yield* nodes.electedAway(leader)
        yield* Effect.logInfo(`fault: every partition led by another node than ${leader}`)
      })
  },
  {
    // min ISR 2 with one replica left: no write may be acknowledged, so the relay blocks (retriable
    // NOT_ENOUGH_REPLICAS), nothing is marked FAILED; the fault ends once both nodes are back.
    name: "two of 3 brokers SIGKILLed (one replica left) 30 s, restarted",
    broker: "cluster",
    meetsRecoveryTarget: true,
    fault: (context) =>
      Effect.gen(function*() {
        const nodes = yield* clusterNodes(context)
        const leader = yield* nodes.busiestLeader
        const other = [1, 2, 3].find((node) => node !== leader)!
        yield* Effect.addFinalizer(() => restartNodes(nodes))
        yield* nodes.kill(leader)
        yield* nodes.kill(other)
        yield* Effect.sleep(context.seconds(30))
        yield* nodes.start
      })
  },
  {
    // The fault ends at the 10th kill (polled often: the clock starts within 20 ms of it); the
    // recovery includes the replacement's start, see `processClients`.
    name: "relay and consumer kill -9 ×10",
    kills: 10,
    meetsRecoveryTarget: true,
    fault: ({ kills }) =>
      Effect.sync(kills).pipe(Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (n) => n >= 10 }))
  }
]

/** The consumer's handler: one statement for all new events of a transaction; it waits while `held()`. */
const applyBatch =
  (group: string, held: () => boolean = () => false) => (delivered: ReadonlyArray<{ readonly event: TestEvent }>) =>
    Effect.flatMap(SqlClient, (sql) =>
      sql`INSERT INTO applied (consumer_group, event_id, message_key, seq)
      SELECT ${group}, e.id, e.k, e.s
      FROM unnest(${delivered.map((d) => d.event.eventId)}::text[], ${delivered.map((d) => d.event.key)}::text[],
                  ${delivered.map((d) => d.event.seq)}::int[]) AS e(id, k, s)`).pipe(
        Effect.asVoid,
        // Only while held: a sleep in every batch held the drain to ~2,000 records/s per member.
        Effect.zipLeft(Effect.sleep("100 millis").pipe(Effect.repeat({ while: held }), Effect.when(held)))
      )

const consumerTimings = { ...TestKafka.fastConsumer, disconnectTimeout: "5 seconds" as const }

/**
 * The relay and the consumer in this process, on `kafka`, for the life of the scope; returns how to
 * start another member of the consumer's group. The first member's batches wait while `held()`.
 */
const inProcessClients = (
  kafka: Layer.Layer<KafkaClient.KafkaClient>,
  topic: FaultTopic,
  group: string,
  held: () => boolean
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.mergeAll(Producer.layer(), DeadLetter.layer).pipe(Layer.provideMerge(kafka))
    )
    const member = (handleBatch: ReturnType<typeof applyBatch>) =>
      IdempotentConsumer.run({
        topic,
        groupId: group,
        handleBatch,
        errors: { SqlError: "retry" },
        batchSize: 200,
        kafka: consumerTimings
      }).pipe(Effect.provide(context))
    yield* OutboxRelay.run({ pollInterval: "200 millis" }).pipe(Effect.provide(context))
    yield* member(applyBatch(group, held))
    return member(applyBatch(group))
  })

/**
 * The relay and the consumer as processes (`test/fixtures/replica.ts`, with `env` for Kafka), for the
 * life of the scope; with `kills`, each is killed with SIGKILL `kills / 2` times at random moments and
 * replaced. A replacement is spawned while the process it replaces runs, loads its modules and
 * waits (`STANDBY`); the kill releases it. So a recovery counts what the pipeline does after a crash
 * (connecting, joining the group, claiming, catching up), not Node loading the modules, which takes
 * 1-3 s on an idle machine and over 10 s on the shared 2 cores under load. The consumer keeps its
 * instance id across replacements, as a deployment's replica (its pod's name): the replacement
 * removes the killed member from the group instead of waiting for its session to time out.
 * Returns once the first two are ready, with the count of kills so far.
 */
const processClients = (
  databaseUrl: string,
  topic: string,
  group: string,
  kills: number,
  env: Record<string, string>
) =>
  Effect.gen(function*() {
    const killed = { value: 0 }
    // A process that exits when nobody killed it is a finding, not a stuck row: what it printed last.
    const died: Array<string> = []
    const running: Partial<Record<"relay" | "consumer", ServiceProcess.Handle>> = {}
    const spawn = (mode: "relay" | "consumer") =>
      Effect.gen(function*() {
        const loaded = yield* Deferred.make<void>()
        const handle = yield* ServiceProcess.spawn({
          name: mode,
          entry: replicaScript,
          args: mode === "relay" ? ["relay", topic] : ["consumer", topic, group],
          env: {
            ...env,
            DATABASE_URL: databaseUrl,
            // The relay with the library's defaults; the consumer deployed for throughput: up to
            // 1,000 records a transaction, the topic's 6 partitions at once (a deployment with a
            // consumer per partition drains as fast). Once the watchers stopped taking the CPU
            // (`appliedOf`), the drain after a Kafka outage was bound by the consumer: 100 records a
            // transaction, one partition at a time applied ~10,000 events/s (cut 11.1 s, frozen
            // 10.8 s); 1,000 x 6: 8.2 and 7.8 s; the database faults 0.0-2.6 s either way. The
            // processes inherit this one's environment: OUTBOX_CONCURRENCY, OUTBOX_BATCH_SIZE,
            // BATCH_SIZE and PARTITIONS_CONCURRENTLY set there reach them.
            BATCH_SIZE: process.env["BATCH_SIZE"] ?? "1000",
            PARTITIONS_CONCURRENTLY: process.env["PARTITIONS_CONCURRENTLY"] ?? "6",
            STANDBY: "1",
            // One statement per transaction, as the in-process consumer's handler.
            ...(mode === "consumer" ? { INSTANCE_ID: "consumer-1", HANDLE_BATCH: "1" } : {})
          },
          ready: "ready",
          onLine: (line) => {
            if (line === "loaded") Deferred.unsafeDone(loaded, Effect.void)
          }
        })
        const exited = Effect.flatMap(handle.exitStatus, ({ code, signal }) =>
          new ServiceProcess.ServiceProcessError({
            name: mode,
            reason: "Exited",
            message: `exited (${code ?? signal}) before it was started`
          }))
        return { handle, loaded: Effect.raceFirst(Deferred.await(loaded), exited), start: handle.signal("SIGUSR2") }
      })
    type Replica = Effect.Effect.Success<ReturnType<typeof spawn>>
    const run = (
      mode: "relay" | "consumer",
      killsLeft: number,
      current: Replica,
      ready: Deferred.Deferred<void, unknown>
    ): Effect.Effect<void, unknown, Scope.Scope> =>
      Effect.gen(function*() {
        yield* Deferred.complete(ready, current.handle.awaitReady)
        running[mode] = current.handle
        const diedOnItsOwn = current.handle.exitStatus.pipe(
          Effect.tap(({ code, signal }) =>
            Effect.sync(() =>
              died.push(
                `the ${mode} process exited (${code ?? signal}):\n${current.handle.lines().slice(-30).join("\n")}`
              )
            )
          ),
          Effect.zipRight(Effect.never)
        )
        if (killsLeft === 0) return yield* diedOnItsOwn
        const next = yield* spawn(mode)
        yield* Effect.raceFirst(Effect.sleep(Duration.millis(1_000 + Math.random() * 2_500)), diedOnItsOwn)
        yield* next.loaded
        yield* current.handle.kill
        killed.value += 1
        yield* next.start
        return yield* run(mode, killsLeft - 1, next, ready)
      })
    const crashing = (mode: "relay" | "consumer", times: number) =>
      Effect.gen(function*() {
        const ready = yield* Deferred.make<void, unknown>()
        yield* spawn(mode).pipe(
          Effect.tap((first) => Effect.zipRight(first.loaded, first.start)),
          Effect.flatMap((first) => run(mode, times, first, ready)),
          Effect.tapErrorCause((cause) => Deferred.failCause(ready, cause)),
          Effect.forkScoped
        )
        return Deferred.await(ready)
      })
    const relayReady = yield* crashing("relay", Math.ceil(kills / 2))
    const consumerReady = yield* crashing("consumer", Math.floor(kills / 2))
    yield* Effect.all([relayReady, consumerReady], { concurrency: 2, discard: true })
    /** What each running process printed last, for a row that never recovered. */
    const tails = () =>
      Object.entries(running).map(([mode, handle]) =>
        `the ${mode} process printed last:\n${handle.lines().slice(-30).join("\n")}`
      )
    return { kills: () => killed.value, died: () => died, tails }
  })

/** Runs one scenario on a database and topic of its own and measures it. */
export const runScenario = (scenario: Scenario, size: Size): Effect.Effect<Row, unknown, never> =>
  Effect.scoped(Effect.gen(function*() {
    const broker = scenario.broker === "private" ? yield* KafkaFaults.broker : undefined
    const cluster = scenario.database === "private" ? yield* DatabaseFaults.cluster : undefined
    if (scenario.broker === "cluster") yield* LocalKafka.ensure(LocalKafka.cluster)
    const baseKafka = broker !== undefined
      ? broker.layer()
      : scenario.broker === "cluster"
      ? KafkaClient.layer({
        brokers: LocalKafka.cluster.brokers,
        clientId: "faults",
        connectionTimeout: 1_000,
        // Enough reconnects to outlast a node's restart; the pipeline's own retries do the rest.
        retries: 10
      })
      : KafkaClient.layerFromEnv.pipe(Layer.orDie)
    const serverUrl = cluster === undefined ? yield* Database.url : cluster.url
    const database = yield* Layer.build(
      Database.layerTest([PipelineMigrations.migrations, appliedMigrations]).pipe(
        Layer.provide(Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map([["DATABASE_URL", Redacted.value(serverUrl)]])).pipe(
            ConfigProvider.orElse(ConfigProvider.fromEnv)
          )
        )),
        Layer.orDie
      )
    )
    const admin = yield* Layer.build(Admin.layer.pipe(Layer.provide(baseKafka), Layer.orDie))
    const sql = Context.get(database, SqlClient)
    const [current] = yield* sql<{ database: string }>`SELECT current_database() AS database`
    const databaseUrl = Redacted.make(Database.withDatabase(Redacted.value(serverUrl), current!.database))
    const topic = topicNamed(TestKafka.uniqueName("faults"), 6)
    const group = TestKafka.uniqueName("faults-group")
    const adminClient = Context.get(admin, Admin.Admin)
    const brokers = scenario.broker === "cluster" ? LocalKafka.cluster.brokers.length : 1
    const created = yield* adminClient.createTopics(TopicAdmin.specs([topic], brokers))
    yield* Effect.addFinalizer(() => adminClient.deleteTopics(created).pipe(Effect.ignore))
    const leaders = adminClient.describeTopics([topic.name]).pipe(
      Effect.map(([description]) => description!.partitions.map((partition) => partition.leader))
    )
    const nodes: ClusterNodes | undefined = scenario.broker === "cluster"
      ? {
        busiestLeader: Effect.map(leaders, (led) => {
          const counts = new Map<number, number>()
          for (const leader of led) counts.set(leader, (counts.get(leader) ?? 0) + 1)
          return [...counts].sort((a, b) => b[1] - a[1])[0]![0]
        }),
        kill: (node) => LocalKafka.kill(LocalKafka.cluster, node),
        start: LocalKafka.start(LocalKafka.cluster),
        electedAway: (node) =>
          leaders.pipe(
            Effect.retry(Schedule.spaced("100 millis")),
            Effect.repeat({
              schedule: Schedule.spaced("100 millis"),
              until: (led) => led.every((l) => l !== node && l >= 0)
            }),
            Effect.asVoid
          )
      }
      : undefined
    const proxy = yield* KafkaFaults.proxy
    const databaseServer = new URL(Redacted.value(serverUrl))
    const dbProxy = scenario.databaseThroughProxy === true
      ? yield* FaultProxy.make({ host: databaseServer.hostname, port: Number(databaseServer.port || "5432") })
      : undefined
    const seconds = (nominal: number) => Duration.seconds(Math.max(3, nominal * size.faultScale))
    let kills = () => 0
    let died = (): ReadonlyArray<string> => []
    let tails = (): ReadonlyArray<string> => []
    let held = false
    let joinGroup: Effect.Effect<void, unknown, Scope.Scope> = Effect.dieMessage(
      "this scenario's clients are processes"
    )

    // Clients
    if ((scenario.clients ?? "processes") === "processes") {
      const kafkaEnv: Record<string, string> = scenario.throughProxy === true
        ? { KAFKA_PROXY: `${proxy.host}:${proxy.port}` }
        : broker !== undefined
        ? { KAFKA_BROKERS: broker.address }
        : scenario.broker === "cluster"
        ? {
          KAFKA_BROKERS: LocalKafka.cluster.brokers.join(","),
          KAFKA_RETRIES: "35",
          // On three replicas a claim waits longer for its acknowledgements (two nodes write each
          // record): a second claim loop sends while the first waits. The two-of-3 row drained in
          // 8.1 / 8.2 s with two loops against 9.2-10.7 s with one (2026-12-03, interleaved); on the
          // single broker a second loop made no consistent difference.
          OUTBOX_CONCURRENCY: process.env["OUTBOX_CONCURRENCY"] ?? "2"
        }
        : {}
      const clientsUrl = new URL(Redacted.value(databaseUrl))
      if (dbProxy !== undefined) {
        clientsUrl.hostname = dbProxy.host
        clientsUrl.port = String(dbProxy.port)
      }
      const clients = yield* processClients(
        clientsUrl.toString(),
        topic.name,
        group,
        scenario.kills ?? 0,
        { ...kafkaEnv, ...scenario.clientEnv }
      )
      kills = clients.kills
      died = clients.died
      tails = clients.tails
    } else {
      const kafka = scenario.throughProxy === true ? KafkaFaults.layerThrough(proxy) : baseKafka
      const join = yield* inProcessClients(kafka, topic, group, () => held).pipe(Effect.provide(database))
      joinGroup = Effect.provide(join, database)
    }
    const expectedFailed: Array<string> = []
    // A COMMIT that died may or may not have committed: append again (a repeat the consumer skips).
    const append = (into: FaultTopic, events: ReadonlyArray<TestEvent>) =>
      sql.withTransaction(Outbox.append(into, ...events)).pipe(
        Effect.sandbox,
        Effect.retry({
          schedule: Schedule.spaced("200 millis"),
          while: (cause) => !Cause.isInterruptedOnly(cause)
        }),
        Effect.unsandbox,
        Effect.provide(database),
        Effect.orDie
      )

    // Workload: writers own disjoint keys, so a key's seq order is its commit order.
    const writers = 4
    const txSize = 20
    const acknowledged = new Set<string>()
    // The processes' ten kills take 25-45 s whatever the scale: the writers go on through them, so
    // that the 10th kill leaves work behind to recover.
    const window = (scenario.kills ?? 0) > 0
      ? 45_000
      : Duration.toMillis(seconds(30)) + 4_000
    const perWriter = Math.ceil(size.events / writers)
    const writer = (w: number) =>
      Effect.gen(function*() {
        const seqs = new Map<string, number>()
        const pause = window / Math.max(1, perWriter / txSize)
        for (let done = 0; done < perWriter && w * perWriter + done < size.events; done += txSize) {
          const count = Math.min(txSize, perWriter - done, size.events - w * perWriter - done)
          const events = Array.from({ length: count }, (_, i) => {
            const key = `k${((done + i) % Math.ceil(size.keys / writers)) * writers + w}`
            const seq = (seqs.get(key) ?? 0) + 1
            seqs.set(key, seq)
            return new TestEvent({ eventId: crypto.randomUUID(), key, seq })
          })
          const started = Date.now()
          yield* append(topic, events)
          events.forEach((event) => acknowledged.add(event.eventId))
          const left = pause - (Date.now() - started)
          if (left > 0) yield* Effect.sleep(Duration.millis(left))
        }
      })
    let faultEnded = 0
    let caughtUp: number | undefined
    // The watchers' queries outlast a database fault; a query that keeps failing says so (FAULTS_LOG_LEVEL=WARN).
    const query = <A>(effect: Effect.Effect<A, unknown, SqlClient>) =>
      effect.pipe(
        Effect.provide(database),
        Effect.tapError((error) => Effect.logWarning("A watcher's query failed; trying again", error)),
        Effect.retry({ schedule: Schedule.spaced("100 millis") }),
        Effect.orDie
      )
    // The watchers must not take the CPU the pipeline drains with: scanning `applied` (and the outbox
    // against it) every 200 ms did, and so did looking up 5,000 awaited events every 100 ms (~30 ms of
    // PostgreSQL each: a third of a core during the drain). They look up the events they still wait
    // for, a small chunk at a time, through an index, and take the time each was applied from its row
    // (`applied_at`), so that how often they look does not bound how exactly they measure. (Not by
    // reading `applied` past the last id seen: concurrent transactions commit their ids out of order,
    // and a row committed behind that cursor would never be seen.)
    const appliedOf = (eventIds: ReadonlyArray<string>) =>
      query(sql<{ readonly eventId: string; readonly appliedAt: number }>`
        SELECT event_id, (extract(epoch FROM min(applied_at)) * 1000)::float8 AS applied_at
        FROM applied WHERE consumer_group = ${group} AND event_id = ANY(${eventIds}::text[])
        GROUP BY event_id`)
    const chunk = 1_000
    /** How many acknowledged events were not applied yet when the fault ended. */
    let piledUp = 0
    const scope = yield* Effect.scope
    // At the fault's end: the events acknowledged so far and not applied yet (a COMMIT still in flight
    // then may commit later: not counted, it is ordinary traffic). Recovery is when the last of them is
    // applied (its row's time, in the consumer's transaction, a few ms before its COMMIT). Taken from
    // what the writers were told, not from the outbox, where a relay with a retention of 0 leaves no
    // row once published.
    const watchRecovery = Effect.gen(function*() {
      // Before any query: one held up by a database fault would let later acknowledgements in.
      const awaited = [...acknowledged]
      let outstanding = (yield* query(sql<{ readonly eventId: string }>`
          SELECT t.event_id FROM unnest(${awaited}::text[]) WITH ORDINALITY AS t(event_id, n)
          WHERE NOT EXISTS (SELECT 1 FROM applied a WHERE a.consumer_group = ${group} AND a.event_id = t.event_id)
          ORDER BY t.n`)).map((row) => row.eventId)
      piledUp = outstanding.length
      let lastApplied = faultEnded
      // The next chunk at once when the whole chunk was applied, else a quarter second later.
      const caughtUpStep = Effect.suspend(() => appliedOf(outstanding.slice(0, chunk))).pipe(
        Effect.map((rows) => {
          const whole = rows.length === Math.min(chunk, outstanding.length)
          const found = new Set(rows.map((row) => row.eventId))
          for (const row of rows) lastApplied = Math.max(lastApplied, row.appliedAt)
          outstanding = outstanding.filter((eventId) => !found.has(eventId))
          if (outstanding.length === 0) caughtUp ??= lastApplied
          return outstanding.length === 0 ? "done" : whole ? "next" : "wait"
        }),
        Effect.tap((step) => step === "wait" ? Effect.sleep("250 millis") : Effect.void)
      )
      // Interruptible: forked from `ensuring`'s finalizer it would inherit its uninterruptibility, and
      // a poll that never succeeds would hold the scope's close.
      yield* Effect.forkIn(
        Effect.interruptible(Effect.repeat(caughtUpStep, { until: (step) => step === "done" })),
        scope
      )
    })
    /** The first event applied after the fault ended (from the rows' times, once the run converged). */
    const firstAppliedAfterFault = Effect.suspend(() =>
      query(sql<{ readonly at: number | null }>`
        SELECT (extract(epoch FROM min(applied_at)) * 1000)::float8 AS at FROM applied
        WHERE consumer_group = ${group} AND applied_at > to_timestamp(${faultEnded / 1000})`)
    ).pipe(Effect.map(([row]) => row?.at ?? undefined))
    /** Cheap enough to ask every 250 ms; the full `measure` only once this says the run may have converged. */
    const settled = query(sql<{ readonly applied: number; readonly pending: number }>`
      SELECT (SELECT count(*)::int FROM applied WHERE consumer_group = ${group}) AS applied,
             (SELECT count(*)::int FROM kpipe_outbox WHERE status IN ('PENDING', 'HELD')) AS pending`).pipe(
      Effect.map(([row]) => row!.applied >= acknowledged.size && row!.pending === 0)
    )
    yield* Effect.all([
      Effect.forEach(Array.from({ length: writers }, (_, w) => w), writer, { concurrency: "unbounded", discard: true }),
      scenario.fault({
        databaseUrl: serverUrl,
        database: current!.database,
        topic: topic.name,
        group,
        seconds,
        proxy,
        databaseProxy: dbProxy,
        kills,
        broker,
        cluster,
        nodes,
        workload: topic,
        append,
        createTopic: (created) =>
          adminClient.createTopics(TopicAdmin.specs([created], brokers)).pipe(
            Effect.tap((names) => Effect.addFinalizer(() => adminClient.deleteTopics(names).pipe(Effect.ignore))),
            Effect.asVoid
          ),
        expectFailed: (eventId) => void expectedFailed.push(eventId),
        holdBatches: (on) => void (held = on),
        joinGroup
      })
        .pipe(
          Effect.delay("2 seconds"),
          Effect.ensuring(Effect.zipRight(Effect.sync(() => (faultEnded = Date.now())), watchRecovery))
        )
    ], { concurrency: "unbounded", discard: true })

    // Convergence
    const measure = Effect.gen(function*() {
      const [row] = yield* sql<{
        applied: number
        twice: number
        outOfOrder: number
        deadLettered: number
        expectedFailed: number
        pending: number
        published: number
      }>`
        SELECT
          (SELECT count(DISTINCT event_id)::int FROM applied WHERE consumer_group = ${group}) AS applied,
          (SELECT count(*)::int FROM (SELECT 1 FROM applied WHERE consumer_group = ${group}
             GROUP BY event_id HAVING count(*) > 1) t) AS twice,
          (SELECT count(DISTINCT message_key)::int FROM (
             SELECT message_key, seq, lag(seq) OVER (PARTITION BY message_key ORDER BY id) AS previous
             FROM applied WHERE consumer_group = ${group}) s
           WHERE previous IS NOT NULL AND seq < previous) AS out_of_order,
          (SELECT count(*)::int FROM kpipe_failed_events)
            + (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'FAILED'
                 AND NOT (event_id = ANY(${expectedFailed}::text[]))) AS dead_lettered,
          (SELECT count(*)::int FROM kpipe_outbox WHERE status = 'FAILED'
             AND event_id = ANY(${expectedFailed}::text[])) AS expected_failed,
          (SELECT count(*)::int FROM kpipe_outbox WHERE status IN ('PENDING', 'HELD')) AS pending,
          (SELECT count(DISTINCT event_id)::int FROM kpipe_outbox
             WHERE status = 'PUBLISHED' AND topic = ${topic.name}) AS published`
      return row!
    }).pipe(Effect.provide(database), Effect.retry({ times: 20, schedule: Schedule.spaced("500 millis") }))
    const deadline = Date.now() + Duration.toMillis(Duration.decode(size.recoveryDeadline))
    let last = yield* measure
    let recovered: number | undefined
    while (Date.now() < deadline && died().length === 0) {
      if (caughtUp === undefined || !(yield* settled)) {
        yield* Effect.sleep("250 millis")
        continue
      }
      last = yield* measure
      if (
        last.applied + last.deadLettered >= acknowledged.size && last.pending === 0 &&
        last.expectedFailed === expectedFailed.length
      ) {
        recovered = Date.now()
        break
      }
      yield* Effect.sleep("250 millis")
    }
    if (died().length > 0) return yield* Effect.fail(new Error(died().join("\n\n")))
    const resumed = piledUp === 0 ? undefined : yield* firstAppliedAfterFault
    if (recovered === undefined) {
      // Printed whatever the log level: the one clue to a row that never converged.
      yield* Effect.sync(() =>
        process.stderr.write(`${scenario.name}: not recovered by the deadline\n${tails().join("\n\n")}\n`)
      )
    } else if (
      size.slowResume !== undefined && resumed !== undefined &&
      resumed - faultEnded > Duration.toMillis(Duration.decode(size.slowResume))
    ) {
      yield* Effect.sync(() =>
        process.stderr.write(
          `${scenario.name}: resumed ${(resumed! - faultEnded) / 1000} s after the fault\n${tails().join("\n\n")}\n`
        )
      )
    }
    yield* Effect.sleep("1 second")
    last = yield* measure
    return {
      scenario: scenario.name,
      events: acknowledged.size,
      // Published and not applied; or, when the relay deletes what it publishes (retention 0),
      // acknowledged and found nowhere.
      lost: Math.max(
        0,
        last.published - last.applied - last.deadLettered,
        acknowledged.size - last.applied - last.deadLettered - last.pending - last.expectedFailed
      ),
      appliedTwice: last.twice,
      outOfOrder: last.outOfOrder,
      wronglyDeadLettered: last.deadLettered,
      // A row the fault made unpublishable that did not end FAILED is stuck too.
      stuck: last.pending + (expectedFailed.length - last.expectedFailed),
      recoverySeconds: recovered === undefined || caughtUp === undefined
        ? undefined
        : Math.max(0, (caughtUp - faultEnded) / 1000),
      resumedSeconds: resumed === undefined ? undefined : Math.max(0, (resumed - faultEnded) / 1000)
    } satisfies Row
  }))

export const format = (rows: ReadonlyArray<Row>) => {
  const header = [
    "scenario",
    "events",
    "lost",
    "applied twice",
    "out of order",
    "wrongly DLT'd",
    "stuck",
    "recovery",
    "resumed"
  ]
  const cells = rows.map((row) => [
    row.scenario,
    String(row.events),
    String(row.lost),
    String(row.appliedTwice),
    String(row.outOfOrder),
    String(row.wronglyDeadLettered),
    String(row.stuck),
    row.recoverySeconds === undefined ? "never" : `${row.recoverySeconds.toFixed(1)} s`,
    row.resumedSeconds === undefined ? "-" : `${row.resumedSeconds.toFixed(1)} s`
  ])
  return BenchReport.markdownTable(header, cells)
}
