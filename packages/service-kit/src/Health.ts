import type * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Admin, Consumer } from "@kpipe/kafka"
import { OutboxRelay } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/** One thing readiness depends on, as last seen. */
export class Check extends Schema.Class<Check>("HealthCheck")({
  name: Schema.String,
  ok: Schema.Boolean,
  detail: Schema.optional(Schema.String)
}) {}

/** The body of `/health/live` and `/health/ready`: 200 when `status` is "ok", 503 otherwise. */
export class Report extends Schema.Class<Report>("HealthReport")({
  status: Schema.Literal("ok", "unavailable"),
  service: Schema.String,
  checks: Schema.Array(Check)
}) {}

export const encodeReport = Schema.encodeSync(Schema.parseJson(Report))

/** A consumer group member the service runs, for readiness and lag. */
export interface Member {
  readonly groupId: string
  readonly topics: ReadonlyArray<string>
}

export class Health extends Context.Tag("@kpipe/service-kit/Health")<Health, {
  readonly service: string
  /** Asks `probe` on every readiness request while the scope lasts; a failure's message is the detail. */
  readonly register: (name: string, probe: Effect.Effect<unknown, unknown>) => Effect.Effect<void, never, Scope.Scope>
  /** Sets a status that something else keeps up to date (a consumer's membership, a loop's state). */
  readonly set: (name: string, ok: boolean, detail?: string) => void
  readonly remove: (name: string) => void
  /** The group members that have joined at least once (for lag). */
  readonly members: () => ReadonlyArray<Member>
  /** Whether an outbox relay runs here. */
  readonly hasRelay: () => boolean
  readonly live: Effect.Effect<Report>
  readonly ready: Effect.Effect<Report>
}>() {}

const probeTimeout = Duration.seconds(2)

const describe = (error: unknown) =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" &&
    error.message !== ""
    ? error.message
    : String(error)

/** The registry alone; `layer` adds the consumer and relay observers. */
export const make = (service: string) =>
  Effect.sync(() => {
    const probes = new Map<string, Effect.Effect<unknown, unknown>>()
    const statuses = new Map<string, Check>()
    const members = new Map<string, Member>()
    let relay = false
    const report = (checks: ReadonlyArray<Check>) =>
      new Report({ status: checks.every((check) => check.ok) ? "ok" : "unavailable", service, checks })
    const runProbe = (name: string, probe: Effect.Effect<unknown, unknown>) =>
      probe.pipe(
        Effect.timeoutFail({
          duration: probeTimeout,
          onTimeout: () => `no answer within ${Duration.format(probeTimeout)}`
        }),
        Effect.match({
          onFailure: (error) => new Check({ name, ok: false, detail: describe(error) }),
          onSuccess: () => new Check({ name, ok: true })
        })
      )
    const health: Health["Type"] = {
      service,
      register: (name, probe) =>
        Effect.acquireRelease(Effect.sync(() => probes.set(name, probe)), () => Effect.sync(() => probes.delete(name)))
          .pipe(Effect.asVoid),
      set: (name, ok, detail) => {
        statuses.set(name, new Check(detail === undefined ? { name, ok } : { name, ok, detail }))
      },
      remove: (name) => {
        statuses.delete(name)
      },
      members: () => [...members.values()],
      hasRelay: () => relay,
      live: Effect.sync(() => report([new Check({ name: "process", ok: true })])),
      ready: Effect.suspend(() =>
        Effect.forEach([...probes], ([name, probe]) => runProbe(name, probe), { concurrency: "unbounded" })
      ).pipe(Effect.map((probed) => report([...probed, ...statuses.values()])))
    }
    const observer: Consumer.Observer["Type"] = {
      member: ({ groupId, topics }, state, detail) => {
        const name = `consumer ${groupId}`
        if (state === "stopped") return health.remove(name)
        if (state === "joined") members.set(groupId, { groupId, topics })
        health.set(name, state === "joined", state === "joined" ? undefined : detail ?? state)
      }
    }
    const relayObserver: OutboxRelay.Observer["Type"] = {
      relay: (state, detail) => {
        relay = true
        if (state === "running") return health.set("outbox relay", true)
        health.set("outbox relay", false, state === "backingOff" ? `recovering: ${detail ?? "backing off"}` : state)
      }
    }
    return { health, observer, relayObserver }
  })

/**
 * The service's `Health`, with the consumer and relay observers: every group member built with
 * it in context is a readiness check (joined, not crashed), and so is an outbox relay (running,
 * not backing off).
 */
export const layer = (service: string): Layer.Layer<Health | Consumer.Observer | OutboxRelay.Observer> =>
  Layer.effectContext(
    Effect.map(make(service), ({ health, observer, relayObserver }) =>
      Context.make(Health, health).pipe(
        Context.add(Consumer.Observer, observer),
        Context.add(OutboxRelay.Observer, relayObserver)
      ))
  )

/** A readiness check asked on every `/health/ready` (within 2 s), while the layer lasts. */
export const layerCheck = <R>(
  name: string,
  probe: Effect.Effect<unknown, unknown, R>
): Layer.Layer<never, never, Health | R> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const health = yield* Health
    const context = yield* Effect.context<R>()
    yield* health.register(name, Effect.provide(probe, context))
  }))

/**
 * The database answers `SELECT 1`, on a connection of its own: on the service's pool the probe
 * waited for a connection behind the requests and batches holding them all, so under load every
 * replica answered 503 at once while the database was fine.
 */
export const database: Layer.Layer<never, SqlError, Health | PgClient.PgClient> = Layer.unwrapScoped(
  Effect.map(Database.separatePool(1), (own) => layerCheck("database", own`SELECT 1`))
)

/** The broker answers a cluster description. */
export const broker: Layer.Layer<never, never, Health | Admin.Admin> = layerCheck(
  "broker",
  Effect.flatMap(Admin.Admin, (admin) => admin.describeCluster)
)
