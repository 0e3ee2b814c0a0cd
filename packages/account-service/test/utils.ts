import { SqlClient } from "@effect/sql/SqlClient"
import { Ids, LoginEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { Eventually } from "@kpipe/testing"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"

export const mainPath = fileURLToPath(new URL("../src/main.ts", import.meta.url))

export const login = (prefix: string, accountId: number, session: number, at: number) =>
  LoginEvents.LoginSucceeded.fromLogin({
    accountId: Ids.AccountId.make(accountId),
    sessionId: Ids.SessionId.make(`${prefix}s-${session}`),
    occurredAt: DateTime.unsafeMake(at)
  })

export const eventually = Eventually.eventually

export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

export const processedLine = /Login event processed: accountId=(\d+) sessionId=(\S+)/

/** An account-service process: its output lines as they arrive, and how it ended. */
export interface ReplicaProcess {
  readonly replica: number
  readonly port: number
  readonly pid: number | undefined
  readonly lines: Array<string>
  readonly exited: Deferred.Deferred<{ readonly code: number | null; readonly signal: string | null }>
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
    const exited = yield* Deferred.make<{ readonly code: number | null; readonly signal: string | null }>()
    const ready = yield* Deferred.make<void>()
    const lines: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(process.execPath, [mainPath], {
          env: { ...process.env, ...env, REPLICA: String(replica), PORT: String(port) },
          stdio: ["ignore", "pipe", "pipe"]
        })
        for (const stream of [child.stdout, child.stderr]) {
          let rest = ""
          stream.on("data", (chunk: Buffer) => {
            const parts = (rest + chunk.toString("utf8")).split("\n")
            rest = parts.pop() ?? ""
            for (const line of parts) {
              lines.push(line)
              if (line.includes("account-service ready")) Deferred.unsafeDone(ready, Effect.void)
            }
          })
        }
        child.on("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed({ code, signal })))
        return child
      }),
      (child) =>
        Effect.gen(function*() {
          if (child.exitCode !== null || child.signalCode !== null) return
          child.kill("SIGTERM")
          const stopped = yield* Deferred.await(exited).pipe(Effect.timeout("20 seconds"), Effect.option)
          if (stopped._tag === "None") child.kill("SIGKILL")
        })
    )
    yield* Effect.raceFirst(
      Deferred.await(ready),
      Effect.flatMap(Deferred.await(exited), ({ code, signal }) =>
        Effect.dieMessage(`replica ${replica} exited (${code ?? signal}) before it was ready:\n${lines.join("\n")}`))
    ).pipe(
      Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () =>
          new Error(`replica ${replica} not ready in 60 s:\n${lines.join("\n")}`)
      })
    )
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
      pid: child.pid,
      lines,
      exited,
      kill: (signal: NodeJS.Signals) =>
        void child.kill(signal),
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
