import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { hintPrefix, parseHint, ShardHints, type Target } from "../src/internal/relayHints.ts"
import { outboxShards } from "../src/PipelineMigrations.ts"

const shardsOf = (target: Target | undefined) =>
  target?._tag === "Shards" ? [...target.shards].sort((a, b) => a - b) : target?._tag

describe("relay hints", () => {
  it.prop(
    "a notification's shards are read back; anything else names none",
    [FastCheck.uniqueArray(FastCheck.integer({ min: 0, max: outboxShards - 1 }), { minLength: 1 })],
    ([shards]) => {
      assert.deepStrictEqual(parseHint(hintPrefix + shards.join(",")), shards)
    }
  )

  it("an older append's notification, an empty list or a shard out of range names no shard", () => {
    for (const payload of ["appended", "shards:", "shards:1,", "shards:-1", `shards:${outboxShards}`, "shards:1.5"]) {
      assert.isUndefined(parseHint(payload), payload)
    }
  })

  it("the first claim looks at every shard; then only notified shards, until a claim took them", () => {
    const hints = new ShardHints(1_000)
    const first = hints.next(16, 0)
    assert.strictEqual(first?._tag, "All")
    hints.claimed(first!, [], false)
    assert.isUndefined(hints.next(16, 10))
    hints.notified([3, 7])
    const target = hints.next(16, 20)
    assert.deepStrictEqual(shardsOf(target), [3, 7])
    hints.claimed(target!, [3, 7], false)
    assert.isUndefined(hints.next(16, 30))
  })

  it("a notification that arrives while a claim of its shard runs is kept for the next claim", () => {
    const hints = new ShardHints(1_000)
    hints.claimed(hints.next(16, 0)!, [], false)
    hints.notified([3])
    const target = hints.next(16, 10)!
    hints.notified([3])
    hints.claimed(target, [3], false)
    assert.deepStrictEqual(shardsOf(hints.next(16, 20)), [3])
  })

  it("a shard another relay held keeps its hint; a claim that filled its batch makes the next look at every shard", () => {
    const hints = new ShardHints(1_000)
    hints.claimed(hints.next(16, 0)!, [], false)
    hints.notified([3, 7])
    hints.claimed(hints.next(16, 10)!, [7], false)
    const retried = hints.next(16, 20)!
    assert.deepStrictEqual(shardsOf(retried), [3])
    hints.claimed(retried, [3], true)
    assert.strictEqual(hints.next(16, 30)?._tag, "All")
  })

  it("every shard is looked at again after a notification without shards, a failed claim, or the interval", () => {
    const hints = new ShardHints(1_000)
    hints.claimed(hints.next(16, 0)!, [], false)
    hints.lookAtAll()
    assert.strictEqual(hints.next(16, 10)?._tag, "All")
    hints.notified([1])
    assert.deepStrictEqual(shardsOf(hints.next(16, 20)), [1])
    assert.strictEqual(hints.next(16, 1_010)?._tag, "All")
  })

  it("a look at every shard takes the hints of the shards it locked, not those of others", () => {
    const hints = new ShardHints(1_000)
    hints.claimed(hints.next(16, 0)!, [], false)
    hints.notified([3, 7])
    hints.lookAtAll()
    const all = hints.next(16, 10)!
    assert.strictEqual(all._tag, "All")
    hints.claimed(all, [3], false)
    assert.deepStrictEqual(shardsOf(hints.next(16, 20)), [7])
  })

  it("a loop whose claim failed looks at every shard, even when another loop's look took the one due", () => {
    const hints = new ShardHints(1_000)
    hints.claimed(hints.next(16, 0)!, [], false)
    hints.lookAtAll()
    assert.strictEqual(hints.next(16, 10)?._tag, "All")
    assert.isUndefined(hints.next(16, 20))
    assert.strictEqual(hints.next(16, 20, true)?._tag, "All")
  })

  it("a claim takes at most its share of the notified shards and says how many wait", () => {
    const hints = new ShardHints(1_000)
    hints.claimed(hints.next(16, 0)!, [], false)
    hints.notified(Array.from({ length: 20 }, (_, i) => i))
    const target = hints.next(16, 10)
    assert.strictEqual(target?._tag === "Shards" ? target.shards.length : 0, 16)
    assert.strictEqual(target?._tag === "Shards" ? target.rest : 0, 4)
  })
})
