import { assert, describe, it } from "@effect/vitest"
import { BenchMemory } from "@kpipe/devtools"

describe("BenchMemory", () => {
  it("reads a process's resident memory, which grows when it touches more", () => {
    const before = BenchMemory.rss(process.pid)
    assert.isAbove(before, 10 * 2 ** 20)
    // 64 MB written page by page is resident until collected.
    const block = Buffer.alloc(64 * 2 ** 20, 1)
    const after = BenchMemory.rss(process.pid)
    assert.isAbove(after - before, 48 * 2 ** 20)
    assert.isAtLeast(BenchMemory.peakRss(process.pid), after)
    assert.strictEqual(block[block.length - 1], 1)
    assert.strictEqual(BenchMemory.mb(150 * 2 ** 20), "150 MB")
  })
})
