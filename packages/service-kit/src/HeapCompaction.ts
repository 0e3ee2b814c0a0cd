import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** Node's `gc` with its options (`--expose-gc`). */
type Gc = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void

/** Resident memory before and after, and how long the process stood still for it. */
export type Compacted = {
  readonly rssBeforeMb: number
  readonly rssAfterMb: number
  readonly pauseMs: number
}

const megabytes = (bytes: number) => Math.round(bytes / 1_048_576)

const gcOf = () => (globalThis as { readonly gc?: Gc }).gc

/**
 * The garbage of a service's start given back to the system, once, when everything is up. Loading
 * ~1,500 modules and building the layers leaves ~60-70 MB of freed pages that V8 keeps for reuse
 * and a young generation grown to its largest, and an idle service never collects in a way that
 * returns them: coupon-service stayed at ~210 MB resident idle, ~140 MB after this (2-core VM).
 * It is V8's last-resort collection (every generation, memory over speed, several passes): a pause
 * of 0.2-0.7 s (up to 2 s with nine services starting at once on two cores), paid once as the
 * service starts (`ServiceMain.launch`: before it logs `ready`).
 * Needs Node's `--expose-gc` (`ServiceMain.nodeFlags`); without it nothing happens (`undefined`).
 */
export const compact: Effect.Effect<Compacted | undefined> = Effect.sync(() => {
  const gc = gcOf()
  if (gc === undefined) return undefined
  const rssBefore = process.memoryUsage.rss()
  const started = performance.now()
  gc({ type: "major", execution: "sync", flavor: "last-resort" })
  return {
    rssBeforeMb: megabytes(rssBefore),
    rssAfterMb: megabytes(process.memoryUsage.rss()),
    pauseMs: Math.round(performance.now() - started)
  }
}).pipe(Effect.withSpan("HeapCompaction.compact"))

/** When an idle service compacts again (`whenIdle`). */
export interface IdleSettings {
  /** How often the event loop's utilization and resident memory are sampled. */
  readonly every: Duration.Duration
  /** Consecutive samples the event loop must be idle before a compaction. */
  readonly samples: number
  /** The share of a sample's time the event loop may be busy and still count as idle. */
  readonly maxUtilization: number
  /** Resident memory gained since the last compaction that is worth a pause. */
  readonly minGrowthMb: number
}

export const idleDefaults: IdleSettings = {
  every: Duration.seconds(10),
  samples: 3,
  maxUtilization: 0.05,
  minGrowthMb: 10
}

/** `HEAP_IDLE_SAMPLE_INTERVAL`, `HEAP_IDLE_SAMPLES`, `HEAP_IDLE_MAX_UTILIZATION`, `HEAP_IDLE_MIN_GROWTH_MB`. */
export const idleConfig: Config.Config<IdleSettings> = Config.all({
  every: Config.duration("HEAP_IDLE_SAMPLE_INTERVAL").pipe(
    Config.withDefault(idleDefaults.every),
    Config.withDescription("How often an idle service's event loop and resident memory are sampled")
  ),
  samples: Config.integer("HEAP_IDLE_SAMPLES").pipe(
    Config.validate({ message: "HEAP_IDLE_SAMPLES must be a positive integer", validation: (n) => n > 0 }),
    Config.withDefault(idleDefaults.samples),
    Config.withDescription("Consecutive idle samples before the heap is compacted again")
  ),
  maxUtilization: Config.number("HEAP_IDLE_MAX_UTILIZATION").pipe(
    Config.validate({
      message: "HEAP_IDLE_MAX_UTILIZATION must be between 0 and 1",
      validation: (n) => n >= 0 && n <= 1
    }),
    Config.withDefault(idleDefaults.maxUtilization),
    Config.withDescription("Event-loop utilization (0-1) below which a sample counts as idle")
  ),
  minGrowthMb: Config.number("HEAP_IDLE_MIN_GROWTH_MB").pipe(
    Config.validate({ message: "HEAP_IDLE_MIN_GROWTH_MB must not be negative", validation: (n) => n >= 0 }),
    Config.withDefault(idleDefaults.minGrowthMb),
    Config.withDescription("Resident memory (MB) gained since the last compaction that is worth a pause")
  )
})

/**
 * Compacts again whenever the service has been idle for `samples` samples in a row and its
 * resident memory grew by `minGrowthMb` since the last compaction; never under load. An idle
 * service still allocates (kafkajs's fetch loops, timers, health checks), and what survives a
 * scavenge grows the old generation and the young one until V8's next major collection, which
 * keeps the freed pages: after `ready` at ~138 MB, order-service and coupon-service crept to
 * 153-156 MB in three idle minutes (2-core VM). After a burst of traffic it is the same, larger:
 * the pages of the busy heap stay resident until this returns them. The pause is that of
 * `compact` on an idle heap, paid only while nothing is going on. Runs forever (fork it); does
 * nothing without `--expose-gc`.
 */
export const whenIdle = (settings: IdleSettings = idleDefaults): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (gcOf() === undefined) return Effect.void
    let baseline = process.memoryUsage.rss()
    let utilization = performance.eventLoopUtilization()
    let idleSamples = 0
    const sample = Effect.suspend(() => {
      const now = performance.eventLoopUtilization()
      const busy = performance.eventLoopUtilization(now, utilization).utilization
      utilization = now
      idleSamples = busy <= settings.maxUtilization ? idleSamples + 1 : 0
      const rss = process.memoryUsage.rss()
      // Memory given back by V8 itself moves the baseline down, so growth is counted from there.
      baseline = Math.min(baseline, rss)
      if (idleSamples < settings.samples || megabytes(rss - baseline) < settings.minGrowthMb) return Effect.void
      return Effect.flatMap(compact, (compacted) => {
        idleSamples = 0
        baseline = process.memoryUsage.rss()
        return Effect.logInfo("Heap compacted while idle").pipe(
          Effect.annotateLogs({ ...compacted, eventLoopUtilization: Math.round(busy * 1000) / 1000 })
        )
      })
    })
    const sampled = sample.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("Idle heap compaction failed; sampling on", cause))
    )
    return Effect.repeat(sampled, Schedule.spaced(settings.every)).pipe(Effect.asVoid)
  })
