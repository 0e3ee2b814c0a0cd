// Memory figures of a benchmark's processes on Linux, from /proc/<pid>/status.
import { readFileSync } from "node:fs"

const field = (pid: number, name: string) => {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return match === null ? Number.NaN : Number(match[1]) * 1024
}

/** Resident set size of process `pid` now, bytes. */
export const rss = (pid: number) => field(pid, "VmRSS")

/** The highest resident set size process `pid` reached so far, bytes. */
export const peakRss = (pid: number) => field(pid, "VmHWM")

export const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`
