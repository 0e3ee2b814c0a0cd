// CPU figures of a benchmark on Linux, from /proc: this process (user, kernel, event loop), the
// machine, the PostgreSQL and Kafka (java) processes, or one process by pid.
import * as Effect from "effect/Effect"
import { readdirSync, readFileSync } from "node:fs"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"

const clockTicks = 100

/** CPU seconds used so far by the PostgreSQL and Kafka (java) processes of this machine. */
const readProcesses = () => {
  const byPid = new Map<string, { readonly name: "postgres" | "java"; readonly seconds: number }>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
      if (name !== "postgres" && name !== "java") continue
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      byPid.set(entry, { name, seconds: (Number(fields[11]) + Number(fields[12])) / clockTicks })
    } catch {
      // the process ended meanwhile
    }
  }
  return byPid
}

/** CPU seconds of the processes alive at `end` (one that ended meanwhile is missed, never counted negative). */
const processSeconds = (
  start: ReturnType<typeof readProcesses>,
  end: ReturnType<typeof readProcesses>,
  name: "postgres" | "java"
) => {
  let total = 0
  for (const [pid, now] of end) {
    if (now.name === name) total += now.seconds - (start.get(pid)?.seconds ?? 0)
  }
  return total
}

const readMachine = () => {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const idle = fields[3]! + fields[4]!
  const total = fields.reduce((a, b) => a + b, 0)
  return { busy: (total - idle) / clockTicks, total: total / clockTicks }
}

export interface Snapshot {
  readonly at: number
  readonly process: NodeJS.CpuUsage
  readonly elu: ReturnType<typeof performance.eventLoopUtilization>
  readonly machine: ReturnType<typeof readMachine>
  readonly processes: ReturnType<typeof readProcesses>
}

export const snapshot = Effect.sync((): Snapshot => ({
  at: performance.now(),
  process: process.cpuUsage(),
  elu: performance.eventLoopUtilization(),
  machine: readMachine(),
  processes: readProcesses()
}))

export const since = (start: Snapshot) =>
  Effect.map(snapshot, (end) => {
    const seconds = (end.at - start.at) / 1000
    const usage = process.cpuUsage(start.process)
    const machineTotal = end.machine.total - start.machine.total
    return {
      machine: machineTotal === 0
        ? 0
        : ((end.machine.busy - start.machine.busy) / machineTotal) * Os.availableParallelism(),
      benchUser: usage.user / 1e6 / seconds,
      benchSystem: usage.system / 1e6 / seconds,
      eventLoop: performance.eventLoopUtilization(end.elu, start.elu).utilization,
      postgres: processSeconds(start.processes, end.processes, "postgres") / seconds,
      kafka: processSeconds(start.processes, end.processes, "java") / seconds
    }
  })
export type Cpu = Effect.Effect.Success<ReturnType<typeof since>>

/** CPU time (ms) process `pid` used so far. */
export const processMs = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * (1000 / clockTicks)
}
