// Where the consumer's time goes: a tracer around the current one that sums each span's duration by
// name (SQL statements by their first words), for the benchmark's BENCH_PROFILE=1.
import { SqlClient } from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Tracer from "effect/Tracer"
import { readFileSync } from "node:fs"

interface Total {
  count: number
  nanos: bigint
  max: bigint
}

const labelOf = (name: string, attributes: ReadonlyMap<string, unknown>) => {
  const text = attributes.get("db.query.text")
  if (name !== "sql.execute" || typeof text !== "string") return name
  return `sql: ${text.replace(/\s+/g, " ").trim().slice(0, 60)}`
}

export const make = Effect.map(Effect.tracer, (inner) => {
  const totals = new Map<string, Total>()
  const tracer = Tracer.make({
    context: inner.context,
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = inner.span(name, parent, context, links, startTime, kind, options)
      const end = span.end.bind(span)
      span.end = (endTime, exit) => {
        end(endTime, exit)
        const label = labelOf(name, span.attributes)
        const total = totals.get(label) ?? { count: 0, nanos: 0n, max: 0n }
        const took = endTime - startTime
        total.count++
        total.nanos += took
        if (took > total.max) total.max = took
        totals.set(label, total)
      }
      return span
    }
  })
  const report = (seconds: number) =>
    [...totals].sort(([, a], [, b]) => Number(b.nanos - a.nanos)).slice(0, 30).map(([label, t]) =>
      `${(Number(t.nanos) / 1e9).toFixed(2).padStart(8)} s ${
        (Number(t.nanos) / 1e9 / seconds * 100).toFixed(0).padStart(4)
      } %  n=${String(t.count).padStart(6)}  avg ${(Number(t.nanos) / t.count / 1e6).toFixed(2)} ms  max ${
        (Number(t.max) / 1e6).toFixed(0)
      } ms  ${label}`
    )
  return { tracer, report }
})

/**
 * CPU seconds of this process and of the PostgreSQL backends serving this database (Linux /proc),
 * less sensitive to other load on the machine than wall time.
 */
export const cpu = Effect.gen(function*() {
  const sql = yield* SqlClient
  const backends = yield* sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity WHERE datname = current_database()`
  let ticks = 0
  for (const { pid } of backends) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // A backend that ended meanwhile: not counted.
    }
  }
  const own = process.cpuUsage()
  return { node: (own.user + own.system) / 1e6, postgres: ticks / 100 }
})
