import * as Effect from "effect/Effect"

/** Node's `gc` with its options (`--expose-gc`). */
type Gc = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void

/** Resident memory before and after, and how long the process stood still for it. */
export type Compacted = {
  readonly rssBeforeMb: number
  readonly rssAfterMb: number
  readonly pauseMs: number
}

const megabytes = (bytes: number) => Math.round(bytes / 1_048_576)

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
  const gc = (globalThis as { readonly gc?: Gc }).gc
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
