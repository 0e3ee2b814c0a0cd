import { SqlClient } from "@effect/sql/SqlClient"
import { Migrations } from "@kpipe/account-service"
import { Ids, LoginEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { Database } from "@kpipe/sql"
import { Eventually, ServiceProcess, TestKafka } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { fileURLToPath } from "node:url"

/** The broker and a fresh migrated account-service database. */
export const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest(Migrations.all))

export const mainPath = fileURLToPath(new URL("../src/main.ts", import.meta.url))

export const login = (prefix: string, accountId: number, session: number, at: number) =>
  LoginEvents.LoginSucceeded.fromLogin({
    accountId: Ids.AccountId.make(accountId),
    sessionId: Ids.SessionId.make(`${prefix}s-${session}`),
    occurredAt: DateTime.unsafeMake(at)
  })

export const eventually = Eventually.eventually

export const freePort = ServiceProcess.freePort

export const processedLine = /Login event processed: accountId=(\d+) sessionId=(\S+)/

/** An account-service process: its output lines as they arrive, and how it ended. */
export interface ReplicaProcess {
  readonly replica: number
  readonly port: number
  readonly pid: number | undefined
  readonly lines: ReadonlyArray<string>
  readonly exited: Deferred.Deferred<ServiceProcess.ExitStatus>
  readonly kill: (signal: NodeJS.Signals) => void
  /** `Login event processed` lines so far: session id → times logged. */
  readonly processed: () => Map<string, number>
}

/**
 * Starts `src/main.ts` as replica `replica` with `env`; waits for `account-service ready`. The scope
 * stops it: SIGTERM, then SIGKILL if it has not exited after 20 s.
 */
export const startReplica = (replica: number, env: Record<string, string>) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const service = yield* ServiceProcess.start({
      name: "account-service",
      entry: mainPath,
      env: { ...env, REPLICA: String(replica), PORT: String(port) },
      stopTimeout: "20 seconds"
    }).pipe(
      Effect.catchTag("ServiceProcessError", (error) =>
        error.reason === "NotReady"
          ? Effect.fail(new Error(`replica ${replica} not ready in 60 s:\n${error.message}`))
          : Effect.dieMessage(`replica ${replica} ${error.message}`))
    )
    yield* Effect.addFinalizer(() => service.stop)
    const exited = yield* Deferred.make<ServiceProcess.ExitStatus>()
    yield* Effect.forkScoped(Effect.flatMap(service.exitStatus, (status) => Deferred.succeed(exited, status)))
    const lines = service.lines()
    const processed = () => {
      const seen = new Map<string, number>()
      for (const line of lines) {
        const match = processedLine.exec(line)
        if (match !== null) {
          seen.set(match[2]!, (seen.get(match[2]!) ?? 0) + 1)
        }
      }
      return seen
    }
    return {
      replica,
      port,
      pid: service.pid,
      lines,
      exited,
      kill: (signal: NodeJS.Signals) => Effect.runSync(service.signal(signal)),
      processed
    } satisfies ReplicaProcess
  })

export const waitForMembers = (group: string, members: number) =>
  eventually(
    Effect.map(
      Effect.flatMap(Admin.Admin, (admin) => admin.describeGroup(group)),
      ({ memberIds, state }) => state === "Stable" && memberIds.length === members
    ),
    "60 seconds",
    `group ${group} stable with ${members} members`
  )

export const committedTotal = (group: string, topic: string) =>
  Effect.flatMap(Admin.Admin, (admin) => admin.committedOffsets(group, topic)).pipe(
    Effect.map((offsets) => offsets.reduce((sum, { offset }) => sum + Math.max(0, Number(offset)), 0))
  )

export const processedCount = (group: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ n: number }>`
      SELECT count(*)::int AS n FROM kpipe_processed_events WHERE consumer_group = ${group}`).pipe(
      Effect.map((rows) => rows[0]!.n)
    )
