import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

export interface SpanStat {
  count: number
  totalMs: number
  items: number
  readonly samples: Array<number>
}

/** Durations of the library's spans and of each SQL statement, by name: a poor man's pg_stat_statements. */
export class SpanRecorder {
  stats = new Map<string, SpanStat>()
  private renames: ReadonlyMap<string, string> = new Map()
  private readonly queryNames = new Map<string, string>()

  private normalized = new Map<string, string>()

  reset(renames: ReadonlyMap<string, string>) {
    this.stats = new Map()
    this.renames = renames
    this.normalized = new Map()
  }

  normalize(name: string) {
    let result = this.normalized.get(name)
    if (result === undefined) {
      result = name
      for (const [from, to] of this.renames) result = result.replaceAll(from, to)
      this.normalized.set(name, result)
    }
    return result
  }

  query(text: string) {
    let name = this.queryNames.get(text)
    if (name === undefined) {
      name = `SQL ${text.replace(/\s+/g, " ").trim().slice(0, 64)}`
      this.queryNames.set(text, name)
    }
    return name
  }

  record(name: string, ms: number, items = 0) {
    const stat = this.stats.get(name)
    if (stat === undefined) this.stats.set(name, { count: 1, totalMs: ms, items, samples: [ms] })
    else {
      stat.count++
      stat.totalMs += ms
      stat.items += items
      stat.samples.push(ms)
    }
  }
}

const nanosToMs = (nanos: bigint) => Number(nanos) / 1e6

const numberAttribute = (attributes: ReadonlyMap<string, unknown>, ...names: ReadonlyArray<string>) => {
  for (const name of names) {
    const value = attributes.get(name)
    if (typeof value === "number") return value
  }
  return 0
}

/**
 * Delegates to the default tracer and times each span when it ends. A transaction is also split
 * into "acquire+BEGIN" (pool wait and BEGIN, until its first child starts) and "COMMIT".
 */
export const recordingTracer = (base: Tracer.Tracer, recorder: SpanRecorder): Tracer.Tracer => {
  const firstChildAt = new WeakMap<Tracer.Span, bigint>()
  return Tracer.make({
    context: (f, fiber) => base.context(f, fiber),
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = base.span(name, parent, context, links, startTime, kind, options)
      const parentSpan = Option.getOrUndefined(parent)
      const parentName = parentSpan?._tag === "Span" ? parentSpan.name : "root"
      if (parentSpan?._tag === "Span" && !firstChildAt.has(parentSpan)) firstChildAt.set(parentSpan, startTime)
      let commitAt: bigint | undefined
      const wrapped: Tracer.Span = {
        _tag: "Span",
        name,
        get spanId() {
          return span.spanId
        },
        get traceId() {
          return span.traceId
        },
        parent,
        context,
        get status() {
          return span.status
        },
        get attributes() {
          return span.attributes
        },
        get links() {
          return span.links
        },
        get sampled() {
          return span.sampled
        },
        kind,
        attribute: (key, value) => span.attribute(key, value),
        addLinks: (added) => span.addLinks(added),
        event: (event, time, attributes) => {
          if (event === "db.transaction.commit") commitAt = time
          span.event(event, time, attributes)
        },
        end: (endTime, exit) => {
          span.end(endTime, exit)
          const ms = nanosToMs(endTime - startTime)
          if (name === "sql.execute") {
            const text = span.attributes.get("db.query.text")
            recorder.record(recorder.query(typeof text === "string" ? text : "?"), ms)
            return
          }
          const label = name === "sql.transaction" ? `TX ${recorder.normalize(parentName)}` : recorder.normalize(name)
          recorder.record(label, ms, numberAttribute(span.attributes, "messaging.batch.message_count", "size"))
          if (name === "sql.transaction") {
            const first = firstChildAt.get(wrapped)
            if (first !== undefined) recorder.record(`${label}: acquire+BEGIN`, nanosToMs(first - startTime))
            if (commitAt !== undefined) recorder.record(`${label}: COMMIT`, nanosToMs(endTime - commitAt))
          }
        }
      }
      return wrapped
    }
  })
}
