import { outboxShards } from "../PipelineMigrations.ts"

/** An append notifies `shards:` and the shards of its rows, e.g. `shards:3,17`. */
export const hintPrefix = "shards:"

/** The shards a notification names, or undefined when it names none (an older append's `appended`). */
export const parseHint = (payload: string): ReadonlyArray<number> | undefined => {
  if (!payload.startsWith(hintPrefix)) return undefined
  const parts = payload.slice(hintPrefix.length).split(",")
  if (!parts.every((part) => /^\d{1,9}$/.test(part))) return undefined
  const shards = parts.map(Number)
  return shards.every((shard) => shard < outboxShards) ? shards : undefined
}

/** What one claim looks at: every shard (the probe of each), or only shards a notification named. */
export type Target =
  | { readonly _tag: "All"; readonly mark: number }
  | { readonly _tag: "Shards"; readonly shards: ReadonlyArray<number>; readonly mark: number; readonly rest: number }

/**
 * The shards commit notifications named since a claim last looked at them, shared by the loops of
 * one relay. A claim of those shards alone needs no probe of the 64 shards and no empty claim after
 * it. Every shard is looked at (as before hints existed) at start, after a claim failed or filled
 * its batch (or, looking at every shard, took as many shards as it may), after a notification
 * without shards, and at least every `everyMs` whatever happens: a row whose notification was
 * missed (appended while the relay was not listening) waits at most that long.
 */
export class ShardHints {
  private readonly hinted = new Map<number, number>()
  private seq = 0
  private allDue = true
  private allAt = 0
  private readonly everyMs: number

  constructor(everyMs: number) {
    this.everyMs = everyMs
  }

  notified(shards: ReadonlyArray<number>) {
    const seq = ++this.seq
    for (const shard of shards) this.hinted.set(shard, seq)
  }

  lookAtAll() {
    this.allDue = true
  }

  /**
   * The next claim's target, or undefined when nothing was notified and no look at every shard is
   * due. A loop whose last claim failed passes `all`: another loop's look at every shard may have
   * taken the one its failure made due.
   */
  next(limit: number, now: number, all = false): Target | undefined {
    if (all || this.allDue || now - this.allAt >= this.everyMs) {
      this.allDue = false
      this.allAt = now
      return { _tag: "All", mark: this.seq }
    }
    if (this.hinted.size === 0) return undefined
    // From a random shard on, as the probe does, so that the loops of a relay take different shards.
    const start = Math.floor(Math.random() * outboxShards)
    const shards = [...this.hinted.keys()]
      .sort((a, b) => ((a + start) % outboxShards) - ((b + start) % outboxShards))
      .slice(0, limit)
    return { _tag: "Shards", shards, mark: this.seq, rest: this.hinted.size - shards.length }
  }

  /**
   * A claim of `target` committed, holding `locked`: what was notified for those shards before it
   * began is published (all of it, unless the claim was `filled`). A shard another relay held
   * keeps its hint: that relay's claim may have begun before the notified commit.
   */
  claimed(target: Target, locked: ReadonlyArray<number>, filled: boolean) {
    for (const shard of locked) {
      const seq = this.hinted.get(shard)
      if (seq !== undefined && seq <= target.mark) this.hinted.delete(shard)
    }
    if (filled) this.allDue = true
  }
}
